{#- Tenant/study partition handling for the incremental star schema and marts.

    The orchestrator runs `dbt build --vars '{"tenant": "acme", "study": "ACME-001"}'`. On an
    incremental run those vars limit every upstream read to that partition and the pre-hook
    `clear_partition()` deletes the partition's old rows first; other partitions are not touched.
    Without vars (or on a first / --full-refresh run) every partition is rebuilt. -#}

{#- The validated {tenant, study} from the vars, or none when neither is set. The names become SQL
    literals, so they must match trialsynth.names.SAFE_NAME. -#}
{% macro partition_vars() %}
  {%- set tenant = var('tenant', none) -%}
  {%- set study = var('study', none) -%}
  {%- if tenant is none and study is none -%}
    {{ return(none) }}
  {%- endif -%}
  {%- if tenant is none or study is none -%}
    {{ exceptions.raise_compiler_error("set both vars 'tenant' and 'study' (got tenant=" ~ tenant ~ ", study=" ~ study ~ ")") }}
  {%- endif -%}
  {%- for kind, value in [('tenant', tenant | string), ('study', study | string)] -%}
    {%- if not modules.re.fullmatch('[A-Za-z0-9][A-Za-z0-9_.-]{0,63}', value) or '..' in value -%}
      {{ exceptions.raise_compiler_error("invalid " ~ kind ~ " var " ~ value ~ ": use 1-64 letters, digits, '_', '.', '-' (no '..')") }}
    {%- endif -%}
  {%- endfor -%}
  {{ return({'tenant': tenant | string, 'study': study | string}) }}
{% endmacro %}

{#- Predicate selecting the partition being rebuilt (true when all partitions are). -#}
{% macro partition_predicate() -%}
  {%- set part = partition_vars() -%}
  {%- if part is none -%}
    (1 = 1)
  {%- else -%}
    (tenant_id = '{{ part.tenant }}' and study_id = '{{ part.study }}')
  {%- endif -%}
{%- endmacro %}

{#- WHERE condition for every upstream read of an incremental model: the partition of the vars on
    an incremental run, everything otherwise. is_incremental() is only asked when vars are set, so
    `dbt compile --no-populate-cache` needs no warehouse connection. -#}
{% macro partition_filter() -%}
  {%- if partition_vars() is not none and is_incremental() -%}
    {{ partition_predicate() }}
  {%- else -%}
    (1 = 1)
  {%- endif -%}
{%- endmacro %}

{#- Pre-hook: on an incremental run, delete the rows about to be rebuilt (the vars' partition, or
    everything without vars) so a partition whose new batch is empty does not keep stale rows. -#}
{% macro clear_partition() -%}
  {%- if execute and is_incremental() -%}
    delete from {{ this }} where {{ partition_predicate() }}
  {%- endif -%}
{%- endmacro %}
