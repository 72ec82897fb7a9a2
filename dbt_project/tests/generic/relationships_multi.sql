{#- Composite foreign key: every non-null combination of `columns` in the model exists in `to`
    (e.g. [tenant_id, study_id, usubjid] -> dim_subject). Written with a marker column instead of
    `parent.x is null` so it holds whether or not the engine's outer joins produce NULLs. With the
    tenant/study vars set, both sides read only that partition (macros/test_scope.sql). -#}
{% test relationships_multi(model, to, columns) %}
with child as (
    select distinct {{ columns | join(', ') }}
    from {{ model }}
    where {% for c in columns %}{{ c }} is not null{% if not loop.last %} and {% endif %}{% endfor %}
),
parent as (
    select distinct {{ columns | join(', ') }}, 1 as parent_found
    from {{ partition_scope(to) }}
)
select {% for c in columns %}child.{{ c }}{% if not loop.last %}, {% endif %}{% endfor %}
from child
left join parent
  on {% for c in columns %}child.{{ c }} = parent.{{ c }}{% if not loop.last %} and {% endif %}{% endfor %}
where coalesce(parent.parent_found, 0) = 0
{% endtest %}
