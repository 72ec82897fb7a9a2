{#- ClickHouse per-partition rebuild: build the new rows, then swap whole partitions in.

    The star schema and marts are MergeTree tables partitioned by (tenant_id, study_id) on the
    ClickHouse target, incremental with strategy insert_overwrite (dbt_project.yml). This replaces
    dbt-clickhouse's insert_overwrite (the root project's macro wins over the adapter's) so that:
    1. the model's rows are inserted into a new-data table of the same structure first; a failure
       there (bad file, query error) leaves the target table untouched;
    2. then ALTER TABLE ... REPLACE PARTITION ... FROM the new-data table swaps each partition
       atomically: readers see the old rows or the new rows, never none. Which partitions:
       - partition-scoped run (tenant/study vars): the vars' partition, also when the new batch is
         empty (a re-drop without AEs: REPLACE from a source without that partition empties it);
         a new batch holding rows of any other partition is refused before anything is swapped;
       - otherwise: every partition of the new batch or of the target (one that disappeared from
         the lake is emptied).
    No DELETE is ever issued. Distributed tables are not supported here. -#}
{% macro clickhouse__incremental_insert_overwrite(existing_relation, partition_by, is_distributed=False) %}
  {%- if is_distributed -%}
    {{ exceptions.raise_compiler_error("trialsynth replaces partitions of local MergeTree tables only; " ~ this ~ " is distributed") }}
  {%- endif -%}
  {#- Named after the partition, not the invocation: a run that failed before the swap leaves its
      table behind, and the partition's next run (never concurrent with it) drops it here. -#}
  {%- set part = partition_vars() if partition_scoped() else none -%}
  {%- set suffix = local_md5(part.tenant ~ '/' ~ part.study)[:12] if part else 'all' -%}
  {%- set new_data = existing_relation.incorporate(path={"identifier": existing_relation.identifier ~ '__dbt_new_' ~ suffix}) -%}
  {% do adapter.drop_relation(new_data) %}
  {% call statement('main') %}
    {{ get_create_table_as_sql(False, new_data, sql) }}
  {% endcall %}
  {%- set ids = trialsynth_partitions_to_replace(existing_relation, new_data) -%}
  {% if ids %}
    {% call statement('replace_partitions') %}
      alter table {{ existing_relation }}
      {%- for id in ids %}
        replace partition id '{{ id }}' from {{ new_data }}{{ ',' if not loop.last }}
      {%- endfor %}
      {%- if adapter.is_at_or_after_version('26.6') %}
      settings allow_replace_partition_from_empty_source = 1
      {%- endif %}
    {% endcall %}
  {% endif %}
  {% do adapter.drop_relation(new_data) %}
{% endmacro %}

{#- Partition ids to swap from new_data into existing (see the docstring above); raises, after
    dropping new_data, when the structures differ or a scoped batch strays out of its partition. -#}
{% macro trialsynth_partitions_to_replace(existing, new_data) %}
  {%- set keys = run_query("select name, partition_key, sorting_key from system.tables where database = '"
       ~ existing.schema ~ "' and name in ('" ~ existing.identifier ~ "', '" ~ new_data.identifier ~ "')") -%}
  {%- set shapes = {} -%}
  {%- for row in keys.rows -%}{%- do shapes.update({row[0]: (row[1], row[2])}) -%}{%- endfor -%}
  {%- if shapes.get(existing.identifier) != shapes.get(new_data.identifier) -%}
    {% do adapter.drop_relation(new_data) %}
    {{ exceptions.raise_compiler_error(existing ~ " has partition/sorting key " ~ shapes.get(existing.identifier)
       ~ " but the model now builds " ~ shapes.get(new_data.identifier) ~ ": rebuild it once with --full-refresh") }}
  {%- endif -%}
  {%- set found = trialsynth_partition_ids(new_data) -%}
  {%- set part = partition_vars() -%}
  {%- if partition_scoped() -%}
    {%- set wanted = run_query("select partitionId('" ~ part.tenant ~ "', '" ~ part.study ~ "')").rows[0][0] -%}
    {%- set strays = found | reject('equalto', wanted) | list -%}
    {%- if strays -%}
      {% do adapter.drop_relation(new_data) %}
      {{ exceptions.raise_compiler_error(this ~ " built rows outside partition " ~ part.tenant ~ "/" ~ part.study
         ~ " (partition ids " ~ strays | join(', ') ~ "); nothing was replaced") }}
    {%- endif -%}
    {{ return([wanted]) }}
  {%- endif -%}
  {{ return((found + trialsynth_partition_ids(existing)) | unique | sort | list) }}
{% endmacro %}

{% macro trialsynth_partition_ids(relation) %}
  {%- set ids = [] -%}
  {%- for row in run_query("select distinct partition_id from system.parts where active and database = '"
       ~ relation.schema ~ "' and table = '" ~ relation.identifier ~ "' order by partition_id").rows -%}
    {%- do ids.append(row[0]) -%}
  {%- endfor -%}
  {{ return(ids) }}
{% endmacro %}
