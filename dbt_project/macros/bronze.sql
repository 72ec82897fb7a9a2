{#- Bronze Parquet of one domain across every tenant/study partition of the lake.

    `<lake>/<tenant>/<study>/bronze/<domain>.parquet` exists for every domain of every partition
    (0 rows with the full schema when the study did not send it), so a glob over all partitions
    never breaks on an absent domain. The lake is $TRIALSYNTH_LAKE_DIR (absolute path, or an
    s3:// / http(s):// URL for ClickHouse). `source()` is called so dbt (and Dagster) record the
    bronze file as the model's upstream. -#}
{% macro bronze(domain) -%}
  {%- set relation = source('bronze', domain) -%}
  {{- adapter.dispatch('bronze_scan', 'trialsynth')(lake_glob(relation.identifier)) -}}
{%- endmacro %}

{% macro lake_glob(file_stem) -%}
  {%- set lake = env_var('TRIALSYNTH_LAKE_DIR', '../data/lake').rstrip('/') -%}
  {%- if "'" in lake or "\\" in lake -%}
    {{ exceptions.raise_compiler_error("TRIALSYNTH_LAKE_DIR must not contain quotes or backslashes: " ~ lake) }}
  {%- endif -%}
  {{- return(lake ~ '/*/*/bronze/' ~ file_stem ~ '.parquet') -}}
{%- endmacro %}

{% macro default__bronze_scan(path) -%}
  read_parquet('{{ path }}', union_by_name = true)
{%- endmacro %}

{% macro clickhouse__bronze_scan(path) -%}
  {%- if path.startswith('s3://') or path.startswith('http://') or path.startswith('https://') -%}
    s3('{{ path }}', 'Parquet')
  {%- else -%}
    file('{{ path }}', 'Parquet')
  {%- endif -%}
{%- endmacro %}
