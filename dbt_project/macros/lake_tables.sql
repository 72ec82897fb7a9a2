{#- Analytics tables the Dagster assets write beside bronze:
    `<TRIALSYNTH_LAKE_DIR>/<tenant>/<study>/<meta.lake_path>` (e.g. design/power_curves.parquet),
    read across every partition as a typed subquery with exactly the source's documented columns
    (`data_type` of each column: bigint, double, varchar, date or boolean).

    An asset that writes a second file declares it under its source's meta.extra_files
    (`<name>: {lake_path: ..., columns: {column: data_type}}`) and models read it with
    lake_table(source, table, extra_file=name): Dagster asset keys must stay unique per source.

    Unlike bronze, such a file exists only once its asset has run for a partition, and possibly for
    no partition yet. The build must not break on that:
    - DuckDB: the glob is checked with `glob()` when the model runs; no match renders an empty
      typed SELECT instead of read_parquet (which raises on an empty glob).
    - ClickHouse: file()/s3() get the column structure explicitly, and with a structure an empty glob
      reads as 0 rows (s3: as long as s3_throw_on_zero_files_match stays at its default, off).
    `source()` is called so dbt (and Dagster) record the producing asset as the model's upstream. -#}
{% macro lake_table(source_name, table_name, extra_file=none) -%}
  {%- set relation = source(source_name, table_name) -%}
  {%- if not execute -%}
    {#- parsing: only the source() dependency matters -#}
    (select 1 as parsing_only)
  {%- else -%}
    {%- set node = lake_source_node(source_name, table_name) -%}
    {%- set meta = node.meta or {} -%}
    {%- set where = source_name ~ "." ~ table_name ~ (" extra file " ~ extra_file if extra_file else "") -%}
    {%- if extra_file -%}
      {%- set spec = (meta.get('extra_files') or {}).get(extra_file) -%}
      {%- if not spec -%}
        {{ exceptions.raise_compiler_error("source " ~ where ~ " is not declared in meta.extra_files") }}
      {%- endif -%}
      {%- set lake_path = spec.get('lake_path') -%}
      {%- set declared = spec.get('columns', {}).items() | list -%}
    {%- else -%}
      {%- set lake_path = meta.get('lake_path') -%}
      {%- set declared = [] -%}
      {%- for column in node.columns.values() -%}
        {%- do declared.append((column.name, column.data_type)) -%}
      {%- endfor -%}
    {%- endif -%}
    {%- if not lake_path or not declared -%}
      {{ exceptions.raise_compiler_error("source " ~ where ~ " needs a lake_path and typed columns") }}
    {%- endif -%}
    {%- for name, type in declared -%}
      {%- if type not in ['bigint', 'double', 'varchar', 'date', 'boolean'] -%}
        {{ exceptions.raise_compiler_error("source " ~ where ~ " column " ~ name ~ ": data_type must be bigint, double, varchar, date or boolean, got " ~ type) }}
      {%- endif -%}
    {%- endfor -%}
    {{ adapter.dispatch('lake_table_scan', 'trialsynth')(lake_glob_path(lake_path), declared) }}
  {%- endif -%}
{%- endmacro %}

{% macro lake_source_node(source_name, table_name) -%}
  {%- for node in graph.sources.values() -%}
    {%- if node.source_name == source_name and node.name == table_name -%}
      {{ return(node) }}
    {%- endif -%}
  {%- endfor -%}
  {{ exceptions.raise_compiler_error("unknown source " ~ source_name ~ "." ~ table_name) }}
{%- endmacro %}

{#- `<lake>/*/*/<lake_path>` (every tenant/study partition), or the vars' partition only on a
    partition-scoped run (macros/partition.sql). -#}
{% macro lake_glob_path(lake_path) -%}
  {%- if "'" in lake_path or "\\" in lake_path or lake_path.startswith('/') or '..' in lake_path -%}
    {{ exceptions.raise_compiler_error("meta.lake_path must be a relative path without quotes or '..': " ~ lake_path) }}
  {%- endif -%}
  {{- return(lake_partition_glob() ~ '/' ~ lake_path) -}}
{%- endmacro %}

{% macro default__lake_table_scan(path, columns) -%}
  {%- set found = run_query("select count(*) from glob('" ~ path ~ "')").columns[0].values()[0] -%}
  {%- if found > 0 %}
  (select {% for name, type in columns %}{{ cast_as(adapter.quote(name), type) }} as {{ adapter.quote(name) }}{% if not loop.last %}, {% endif %}{% endfor %}
   from read_parquet('{{ path }}', union_by_name = true))
  {%- else %}
  (select {% for name, type in columns %}{{ cast_as('null', type) }} as {{ adapter.quote(name) }}{% if not loop.last %}, {% endif %}{% endfor %}
   where 1 = 0)
  {%- endif -%}
{%- endmacro %}

{% macro clickhouse__lake_table_scan(path, columns) -%}
  {%- set structure = [] -%}
  {%- for name, type in columns -%}
    {%- do structure.append(name ~ ' ' ~ clickhouse_type(type)) -%}
  {%- endfor -%}
  (select * from {{ clickhouse_parquet(path, structure | join(', ')) }})
{%- endmacro %}
