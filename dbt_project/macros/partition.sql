{#- Tenant/study partition handling for the incremental star schema and marts.

    The orchestrator runs `dbt build --vars '{"tenant": "acme", "study": "ACME-001"}'`. With those
    vars a run reads and rebuilds that partition only (partition_scoped()): bronze and the lake's
    analytics tables are read from the partition's own folder, the staging views of the run live in
    a schema of their own (generate_schema_name below: concurrent partition builds never redefine
    each other's views), every upstream read of an incremental model is filtered to the partition
    (partition_filter()), and the partition's rows are replaced:
    - DuckDB: delete+insert; the pre-hook clear_partition() deletes the partition's old rows first
      (also when its new batch is empty). dbt-duckdb runs the pre-hook, the delete and the insert in
      one transaction, so a failed insert rolls the delete back.
    - ClickHouse: the partition's rows are built into a new-data table, then swapped in with
      ALTER TABLE ... REPLACE PARTITION (macros/clickhouse_replace_partition.sql): nothing is
      deleted before the new rows exist.
    Without vars, or with --full-refresh, every partition is rebuilt. -#}

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

{#- True when this run reads and rebuilds the vars' partition only: vars set and no --full-refresh
    (a full refresh rebuilds every partition whatever the vars say). -#}
{% macro partition_scoped() -%}
  {{- return(partition_vars() is not none and not flags.FULL_REFRESH) -}}
{%- endmacro %}

{#- WHERE condition for every upstream read of an incremental model: the vars' partition on a
    partition-scoped run (the first run of a model too: it then holds that partition only until the
    other partitions' runs add theirs), everything otherwise. Asks the warehouse nothing, so
    `dbt compile --no-populate-cache` needs no connection. -#}
{% macro partition_filter() -%}
  {%- if partition_scoped() -%}
    {{ partition_predicate() }}
  {%- else -%}
    (1 = 1)
  {%- endif -%}
{%- endmacro %}

{#- Pre-hook: on an incremental run, delete the rows about to be rebuilt (the vars' partition, or
    everything without vars) so a partition whose new batch is empty does not keep stale rows.
    DuckDB only: the pre-hook runs in the model's transaction. ClickHouse replaces partitions
    instead of deleting (see the module docstring), so it renders nothing there. -#}
{% macro clear_partition() -%}
  {{- adapter.dispatch('clear_partition', 'trialsynth')() -}}
{%- endmacro %}

{% macro default__clear_partition() -%}
  {%- if execute and is_incremental() -%}
    delete from {{ this }} where {{ partition_filter() }}
  {%- endif -%}
{%- endmacro %}

{% macro clickhouse__clear_partition() -%}
{%- endmacro %}

{#- Lower-case letters, digits and '_' only, for a schema name built from tenant/study names. -#}
{% macro _schema_safe(text) -%}
  {{- return(modules.re.sub('[^a-z0-9_]', '_', text | lower)) -}}
{%- endmacro %}

{#- Schema of a node: dbt's default, except for views (the staging models) on a partition-scoped
    run, which go to `<schema>__<tenant>__<study>_<hash>`: a view bakes in the partition's lake
    path, so each partition gets its own (names lower-cased and hashed, as DuckDB folds case). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {%- set schema = default__generate_schema_name(custom_schema_name, node) | trim -%}
  {%- if node is not none and node.resource_type == 'model' and node.config.materialized == 'view' and partition_scoped() -%}
    {%- set part = partition_vars() -%}
    {{- schema ~ '__' ~ _schema_safe(part.tenant) ~ '__' ~ _schema_safe(part.study) ~ '_' ~ local_md5(part.tenant ~ '/' ~ part.study)[:6] -}}
  {%- else -%}
    {{- schema -}}
  {%- endif -%}
{%- endmacro %}
