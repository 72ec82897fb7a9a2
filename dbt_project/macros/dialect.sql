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
  {%- set types = {'bigint': 'Int64', 'double': 'Float64', 'varchar': 'String', 'date': 'Date32', 'boolean': 'Bool'} -%}
  cast({{ expression }} as Nullable({{ types[type] }}))
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
