-- The study's visit schedule: one row per visit number seen in SV, VS or LB, named by its most
-- frequent name (SV names first) with the planned study day from SV.
with visit_rows as (
    select tenant_id, study_id, visitnum, visit, planned_study_day, usubjid, 1 as from_sv
    from {{ ref('stg_sv') }}
    where {{ partition_filter() }}
    union all
    select tenant_id, study_id, visitnum, visit, {{ cast_as('null', 'double') }}, usubjid, 0
    from {{ ref('stg_vs') }}
    where {{ partition_filter() }}
    union all
    select tenant_id, study_id, visitnum, visit, {{ cast_as('null', 'double') }}, usubjid, 0
    from {{ ref('stg_lb') }}
    where {{ partition_filter() }}
),

names as (
    select tenant_id, study_id, visitnum, visit, max(from_sv) as named_in_sv, count(*) as n
    from visit_rows
    where visitnum is not null and visit is not null
    group by tenant_id, study_id, visitnum, visit
),

best_name as (
    select tenant_id, study_id, visitnum, visit
    from (
        select
            tenant_id,
            study_id,
            visitnum,
            visit,
            row_number() over (
                partition by tenant_id, study_id, visitnum order by named_in_sv desc, n desc, visit
            ) as rn
        from names
    ) as ranked
    where rn = 1
),

schedule as (
    select
        tenant_id,
        study_id,
        visitnum,
        min(planned_study_day) as planned_day,
        count(distinct case when from_sv = 1 then usubjid end) as n_subjects_visited,
        max(from_sv) as in_sv
    from visit_rows
    where visitnum is not null
    group by tenant_id, study_id, visitnum
)

select
    s.tenant_id as tenant_id,
    s.study_id as study_id,
    s.visitnum as visitnum,
    b.visit as visit,
    s.planned_day as planned_day,
    row_number() over (partition by s.tenant_id, s.study_id order by s.visitnum) as visit_order,
    {{ flag("upper(coalesce(b.visit, '')) like '%UNSCHED%'") }} as is_unscheduled,
    {{ flag('s.in_sv = 1') }} as is_in_sv,
    s.n_subjects_visited as n_subjects_visited
from schedule as s
left join best_name as b
    on b.tenant_id = s.tenant_id and b.study_id = s.study_id and b.visitnum = s.visitnum
