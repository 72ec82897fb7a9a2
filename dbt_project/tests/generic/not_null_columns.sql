{#- Fails on rows where any of the columns is NULL (several not_null checks in one query). -#}
{% test not_null_columns(model, columns) %}
select {{ columns | join(', ') }}
from {{ model }}
where {% for c in columns %}{{ c }} is null{% if not loop.last %} or {% endif %}{% endfor %}
{% endtest %}
