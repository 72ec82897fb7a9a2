{#- The few expressions whose spelling differs between DuckDB and ClickHouse. Everything else in
    the models is SQL both engines read the same way. -#}

{#- Typed date from an ISO 8601 string as sent ('2014-03-05', '2014-03-05T10:00'); partial dates
    ('2014-03', '2014') and unparsable text give NULL. -#}
{% macro iso_date(column) -%}
  {{ adapter.dispatch('iso_date', 'trialsynth')(column) }}
{%- endmacro %}

{% macro default__iso_date(column) -%}
  try_cast(left({{ column }}, 10) as date)
{%- endmacro %}

{% macro clickhouse__iso_date(column) -%}
  toDate32OrNull(left({{ column }}, 10))
{%- endmacro %}

{#- CAST that keeps NULLs: ClickHouse's plain CAST to a non-Nullable type raises on NULL.
    type is one of bigint, double, varchar, date, boolean. -#}
{% macro cast_as(expression, type) -%}
  {{ adapter.dispatch('cast_as', 'trialsynth')(expression, type) }}
{%- endmacro %}

{% macro default__cast_as(expression, type) -%}
  cast({{ expression }} as {{ type }})
{%- endmacro %}

{% macro clickhouse__cast_as(expression, type) -%}
  cast({{ expression }} as {{ clickhouse_type(type) }})
{%- endmacro %}

{#- The Nullable ClickHouse type of one of the type names cast_as takes. -#}
{% macro clickhouse_type(type) -%}
  {%- set types = {'bigint': 'Int64', 'double': 'Float64', 'varchar': 'String', 'date': 'Date32', 'boolean': 'Bool'} -%}
  {%- if type not in types -%}
    {{ exceptions.raise_compiler_error("type must be one of " ~ (types.keys() | join(', ')) ~ ", got " ~ type) }}
  {%- endif -%}
  {{- return('Nullable(' ~ types[type] ~ ')') -}}
{%- endmacro %}

{#- Monday of the ISO week of a date, as a date. -#}
{% macro week_start(date_expression) -%}
  {{ adapter.dispatch('week_start', 'trialsynth')(date_expression) }}
{%- endmacro %}

{% macro default__week_start(date_expression) -%}
  cast(date_trunc('week', {{ date_expression }}) as date)
{%- endmacro %}

{% macro clickhouse__week_start(date_expression) -%}
  toMonday({{ date_expression }})
{%- endmacro %}

{#- Trimmed text with blanks as NULL (SAS transport files carry blanks for missing strings). -#}
{% macro text(column) -%}
  nullif(trim({{ column }}), '')
{%- endmacro %}

{#- md5 surrogate key of string/integer expressions, identical on both engines (no floats: their
    text form differs between engines). -#}
{% macro surrogate_key(expressions) -%}
  {%- set parts = [] -%}
  {%- for expression in expressions -%}
    {%- do parts.append("coalesce(" ~ cast_as(expression, 'varchar') ~ ", '')") -%}
    {%- if not loop.last -%}{%- do parts.append("'|'") -%}{%- endif -%}
  {%- endfor -%}
  {{ dbt.hash(dbt.concat(parts)) }}
{%- endmacro %}

{#- 1/0 flag as a boolean column (Bool in ClickHouse, BOOLEAN in DuckDB). -#}
{% macro flag(condition) -%}
  case when {{ condition }} then true else false end
{%- endmacro %}

{#- Continuous quantile (linear interpolation between order statistics, as numpy's default and
    Excel PERCENTILE.INC) of a numeric expression; NULLs are ignored. q is a literal in [0, 1]. -#}
{% macro quantile_cont(expression, q) -%}
  {{ adapter.dispatch('quantile_cont', 'trialsynth')(expression, q) }}
{%- endmacro %}

{% macro default__quantile_cont(expression, q) -%}
  quantile_cont({{ expression }}, {{ q }})
{%- endmacro %}

{% macro clickhouse__quantile_cont(expression, q) -%}
  quantileExactInclusive({{ q }})({{ expression }})
{%- endmacro %}

{#- A date plus a whole number of days, as a date. -#}
{% macro add_days(date_expression, days) -%}
  {{ adapter.dispatch('add_days', 'trialsynth')(date_expression, days) }}
{%- endmacro %}

{% macro default__add_days(date_expression, days) -%}
  cast({{ date_expression }} + cast({{ days }} as integer) as date)
{%- endmacro %}

{% macro clickhouse__add_days(date_expression, days) -%}
  addDays({{ date_expression }}, {{ days }})
{%- endmacro %}

{#- The integers 0 .. 10^digits - 1 as a subquery with one column n (plain SQL on both engines). -#}
{% macro integers(digits=4) -%}
  (
    select
      {%- for i in range(digits) %} d{{ i }}.d * {{ 10 ** i }}{% if not loop.last %} +{% endif %}{% endfor %} as n
    from
      {%- for i in range(digits) %}
      (select 0 as d union all select 1 union all select 2 union all select 3 union all select 4
       union all select 5 union all select 6 union all select 7 union all select 8 union all select 9) as d{{ i }}
      {%- if not loop.last %} cross join{% endif %}
      {%- endfor %}
  )
{%- endmacro %}
