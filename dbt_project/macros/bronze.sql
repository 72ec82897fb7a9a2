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
  {{- return(lake_root() ~ '/*/*/bronze/' ~ file_stem ~ '.parquet') -}}
{%- endmacro %}

{#- The lake folder or URL, validated (it becomes a SQL literal). -#}
{% macro lake_root() -%}
  {%- set lake = env_var('TRIALSYNTH_LAKE_DIR', '../data/lake').rstrip('/') -%}
  {%- if "'" in lake or "\\" in lake -%}
    {{ exceptions.raise_compiler_error("TRIALSYNTH_LAKE_DIR must not contain quotes or backslashes: " ~ lake) }}
  {%- endif -%}
  {{- return(lake) -}}
{%- endmacro %}

{% macro default__bronze_scan(path) -%}
  read_parquet('{{ path }}', union_by_name = true)
{%- endmacro %}

{% macro clickhouse__bronze_scan(path) -%}
  {{ clickhouse_parquet(path) }}
{%- endmacro %}

{#- file() or s3() over a Parquet glob; `structure` ('name Type, ...') is optional. -#}
{% macro clickhouse_parquet(path, structure=none) -%}
  {%- set args = "'" ~ path ~ "', 'Parquet'" ~ (", '" ~ structure ~ "'" if structure else "") -%}
  {%- if path.startswith('s3://') or path.startswith('http://') or path.startswith('https://') -%}
    s3({{ args }})
  {%- else -%}
    file({{ args }})
  {%- endif -%}
{%- endmacro %}
