{#- Data tests scoped to the partition being built.

    With the tenant/study vars set (the orchestrator's per-partition `dbt build`), every data test
    reads only that partition's rows, so one study's bad rows fail its own build and no other;
    without vars (a full build) the tests check every partition. Every model with data tests
    carries tenant_id and study_id (tests/test_dbt_test_scoping.py checks it).

    dbt 1.11 renders a project-level `+where` (dbt_project.yml) with var() and env_var() only, not
    with project macros, so the scoping sits in the macro behind the `where` config instead: dbt
    replaces `{{ model }}` in every generic test (built-in and tests/generic/) by
    get_where_subquery(model). The root project's default__ implementation comes first in dbt's
    dispatch, for DuckDB and ClickHouse alike. The parent side of relationship tests is scoped with
    partition_scope(): a child row of a partition must find its parent in that same partition. -#}

{#- The tested relation limited to the vars' partition and to the test's own `where` config. -#}
{% macro default__get_where_subquery(relation) -%}
  {%- set conditions = [] -%}
  {%- if partition_vars() is not none -%}
    {%- do conditions.append(partition_predicate()) -%}
  {%- endif -%}
  {%- set where = config.get('where', '') -%}
  {%- if where -%}
    {%- do conditions.append('(' ~ where ~ ')') -%}
  {%- endif -%}
  {%- if conditions -%}
    {%- do return('(select * from ' ~ relation ~ ' where ' ~ (conditions | join(' and ')) ~ ') dbt_subquery') -%}
  {%- endif -%}
  {%- do return(relation) -%}
{%- endmacro %}

{#- A relation limited to the vars' partition, as a subquery; the relation itself without vars. -#}
{% macro partition_scope(relation) -%}
  {%- if partition_vars() is none -%}
    {%- do return(relation) -%}
  {%- endif -%}
  {%- do return('(select * from ' ~ relation ~ ' where ' ~ partition_predicate() ~ ') partition_scoped') -%}
{%- endmacro %}

{#- dbt's built-in `relationships` with its parent side scoped too. A marker column instead of
    `parent.to_field is null` keeps the result independent of ClickHouse's join_use_nulls (the
    reason dbt-clickhouse's own version appends a SETTINGS clause). -#}
{% macro default__test_relationships(model, column_name, to, field) %}
with child as (
    select {{ column_name }} as from_field
    from {{ model }}
    where {{ column_name }} is not null
),
parent as (
    select {{ field }} as to_field, 1 as parent_found
    from {{ partition_scope(to) }}
)
select child.from_field
from child
left join parent
  on child.from_field = parent.to_field
where coalesce(parent.parent_found, 0) = 0
{% endmacro %}
