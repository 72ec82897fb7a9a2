{#- Bronze Parquet of one domain: `<lake>/<tenant>/<study>/bronze/<domain>.parquet`.

    A partition-scoped run (tenant/study vars, see macros/partition.sql) reads its partition's folder
    only; otherwise the glob spans every partition (`<lake>/*/*/bronze/...`). The file exists for
    every domain of every partition (0 rows with the full schema when the study did not send it), so
    neither glob breaks on an absent domain. `source()` is called so dbt (and Dagster) record the
    bronze file as the model's upstream.

    The lake is $TRIALSYNTH_LAKE_DIR: a local folder (absolute path) or, for ClickHouse, an S3 URL
    (`s3://bucket/prefix` on AWS, `http(s)://endpoint/bucket/prefix` elsewhere), read with `s3()`.
    S3 credentials never appear in the project's SQL:
    - $TRIALSYNTH_DBT_LAKE_S3_COLLECTION names a ClickHouse named collection holding the lake's URL
      and credentials (server config or CREATE NAMED COLLECTION): the paths are passed as `filename`
      relative to its url, and no secret reaches dbt at all (recommended);
    - else $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY when set (they then appear in dbt's compiled
      SQL under target/, which must stay private; ClickHouse hides them in SHOW CREATE and its logs);
    - else none: the server's own credentials (IAM role, `use_environment_credentials`).
    $TRIALSYNTH_DBT_LAKE_S3_HEADERS (JSON {header: value}) adds request headers to every s3(): the
    Dagster dbt step sets it to the partition tenant's SSE-C key headers when the lake is stored with
    SSE-C (assets/warehouse.py), and removes the step's compiled SQL afterwards. Named collections
    cannot carry headers, so SSE-C needs the URL form. -#}
{% macro bronze(domain) -%}
  {%- set relation = source('bronze', domain) -%}
  {{- adapter.dispatch('bronze_scan', 'trialsynth')(lake_glob(relation.identifier)) -}}
{%- endmacro %}

{% macro lake_glob(file_stem) -%}
  {{- return(lake_partition_glob() ~ '/bronze/' ~ file_stem ~ '.parquet') -}}
{%- endmacro %}

{#- `<lake>/<tenant>/<study>` on a partition-scoped run, `<lake>/*/*` otherwise. ClickHouse gets
    the names as one-alternative globs (`{acme}`): file()/s3() read a glob matching no file as 0
    rows (with a structure given) but fail on a missing plain path, and an analytics table may not
    exist yet (macros/lake_tables.sql). The names match SAFE_NAME: no commas or braces. -#}
{% macro lake_partition_glob() -%}
  {%- if not partition_scoped() -%}
    {{- return(lake_root() ~ '/*/*') -}}
  {%- endif -%}
  {%- set part = partition_vars() -%}
  {%- set pattern = '{%s}' if target.type == 'clickhouse' else '%s' -%}
  {{- return(lake_root() ~ '/' ~ pattern | format(part.tenant) ~ '/' ~ pattern | format(part.study)) -}}
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
  {%- if path.startswith('s3://') or path.startswith('http://') or path.startswith('https://') -%}
    {{ clickhouse_s3(path, structure) }}
  {%- else -%}
    file({{ sql_string(path) }}, 'Parquet'{{ (', ' ~ sql_string(structure)) if structure else '' }})
  {%- endif -%}
{%- endmacro %}

{#- s3() over a lake URL, credentials as described at the top of this file. -#}
{% macro clickhouse_s3(url, structure=none) -%}
  {%- set collection = env_var('TRIALSYNTH_DBT_LAKE_S3_COLLECTION', '') -%}
  {#- read at run time only: a value read while parsing would be kept in dbt's partial-parse state -#}
  {%- set headers = fromjson(env_var('TRIALSYNTH_DBT_LAKE_S3_HEADERS', '{}')) if execute else {} -%}
  {%- if headers and collection -%}
    {{ exceptions.raise_compiler_error("the lake is read with SSE-C headers, which ClickHouse named collections cannot carry: unset TRIALSYNTH_DBT_LAKE_S3_COLLECTION (credentials then come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)") }}
  {%- endif -%}
  {%- if headers and not partition_scoped() -%}
    {{ exceptions.raise_compiler_error("the lake's SSE-C headers hold one tenant's key: run dbt on one partition (--vars tenant/study)") }}
  {%- endif -%}
  {%- if collection -%}
    {%- if not modules.re.fullmatch('[A-Za-z_][A-Za-z0-9_]*', collection) -%}
      {{ exceptions.raise_compiler_error("TRIALSYNTH_DBT_LAKE_S3_COLLECTION must be a ClickHouse identifier, got " ~ collection) }}
    {%- endif -%}
    {#- the collection's url is the lake root: pass the path below it -#}
    s3({{ collection }}, filename = {{ sql_string(url[lake_root() | length:].lstrip('/')) }}, format = 'Parquet'
       {{- (', structure = ' ~ sql_string(structure)) if structure else '' }})
  {%- else -%}
    {%- set key_id = env_var('AWS_ACCESS_KEY_ID', '') -%}
    {%- set secret = env_var('AWS_SECRET_ACCESS_KEY', '') -%}
    s3({{ sql_string(url) }}{% if key_id and secret %}, {{ sql_string(key_id) }}, {{ sql_string(secret) }}{% endif %}, 'Parquet'
       {{- (', ' ~ sql_string(structure)) if structure else '' }}
       {%- if headers %}, headers({% for name, value in headers | dictsort %}{{ sql_string(name) }} = {{ sql_string(value) }}{{ ', ' if not loop.last }}{% endfor %}){% endif %})
  {%- endif -%}
{%- endmacro %}

{#- A SQL string literal (both engines: quotes doubled, no backslashes accepted). -#}
{% macro sql_string(text) -%}
  {%- if "\\" in text -%}
    {{ exceptions.raise_compiler_error("a backslash cannot be put in a SQL string here: " ~ text) }}
  {%- endif -%}
  {{- return("'" ~ text.replace("'", "''") ~ "'") -}}
{%- endmacro %}
