-- One row per screened subject: screening and randomization dates, screen-failure reason, how and
-- when the subject left the study, and the subject-days on study that KRI rates are measured per.
with subjects as (
    select
        tenant_id, study_id, usubjid, site_id, arm, armcd, actual_arm, is_screen_failure, is_randomized,
        informed_consent_date, first_dose_date, last_known_date
    from {{ ref('dim_subject') }}
    where {{ partition_filter() }}
),

ds as (
    select tenant_id, study_id, usubjid, seq, reported_term, upper(decod) as decod, upper(category) as category, start_date
    from {{ ref('stg_ds') }}
    where {{ partition_filter() }}
),

studies as (
    select tenant_id, study_id, data_cut_date
    from {{ ref('dim_study') }}
    where {{ partition_filter() }}
),

first_visit as (
    select tenant_id, study_id, usubjid, min(visit_start_date) as first_visit_date
    from {{ ref('stg_sv') }}
    where {{ partition_filter() }}
    group by tenant_id, study_id, usubjid
),

milestones as (
    select
        tenant_id,
        study_id,
        usubjid,
        min(case when decod = 'RANDOMIZED' then start_date end) as randomized_milestone_date,
        min(case when decod = 'SCREEN FAILURE' then start_date end) as screen_fail_date,
        min(start_date) as first_ds_date
    from ds
    group by tenant_id, study_id, usubjid
),

-- DSTERM of the first SCREEN FAILURE record carries the reason (e.g. INCLUSION/EXCLUSION CRITERIA NOT MET).
screen_fail_reasons as (
    select tenant_id, study_id, usubjid, reported_term as screen_fail_reason
    from (
        select
            tenant_id, study_id, usubjid, reported_term,
            row_number() over (partition by tenant_id, study_id, usubjid order by start_date nulls last, seq nulls last) as rn
        from ds
        where decod = 'SCREEN FAILURE'
    ) as ranked
    where rn = 1
),

-- End of study: the latest disposition event (DSCAT DISPOSITION EVENT, or no category) that is
-- not a screen failure: COMPLETED, or the reason for discontinuing.
end_of_study as (
    select tenant_id, study_id, usubjid, decod as end_of_study_reason, start_date as end_of_study_date
    from (
        select
            tenant_id, study_id, usubjid, decod, start_date,
            row_number() over (
                partition by tenant_id, study_id, usubjid order by start_date desc nulls last, seq desc nulls last
            ) as rn
        from ds
        where (category is null or category = 'DISPOSITION EVENT') and coalesce(decod, '') <> 'SCREEN FAILURE'
    ) as ranked
    where rn = 1
),

course as (
    select
        s.tenant_id as tenant_id,
        s.study_id as study_id,
        s.usubjid as usubjid,
        s.site_id as site_id,
        s.arm as arm,
        s.armcd as armcd,
        s.actual_arm as actual_arm,
        s.is_screen_failure as is_screen_failure,
        s.is_randomized as is_randomized,
        coalesce(s.informed_consent_date, fv.first_visit_date, m.first_ds_date) as screening_date,
        case when s.is_screen_failure then m.screen_fail_date end as screen_fail_date,
        case when s.is_screen_failure then coalesce(r.screen_fail_reason, 'NOT RECORDED') end as screen_fail_reason,
        case when s.is_randomized then coalesce(m.randomized_milestone_date, s.first_dose_date) end as randomization_date,
        case when s.is_randomized then coalesce(s.first_dose_date, m.randomized_milestone_date) end as on_study_date,
        case when s.is_randomized then e.end_of_study_reason end as end_of_study_reason,
        case when s.is_randomized then e.end_of_study_date end as end_of_study_date,
        case
            when not s.is_randomized then {{ cast_as('null', 'date') }}
            when e.end_of_study_reason is null then st.data_cut_date
            else coalesce(e.end_of_study_date, s.last_known_date, st.data_cut_date)
        end as exposure_end_date
    from subjects as s
    left join first_visit as fv
        on fv.tenant_id = s.tenant_id and fv.study_id = s.study_id and fv.usubjid = s.usubjid
    left join milestones as m
        on m.tenant_id = s.tenant_id and m.study_id = s.study_id and m.usubjid = s.usubjid
    left join screen_fail_reasons as r
        on r.tenant_id = s.tenant_id and r.study_id = s.study_id and r.usubjid = s.usubjid
    left join end_of_study as e
        on e.tenant_id = s.tenant_id and e.study_id = s.study_id and e.usubjid = s.usubjid
    left join studies as st
        on st.tenant_id = s.tenant_id and st.study_id = s.study_id
)

select
    tenant_id,
    study_id,
    usubjid,
    site_id,
    arm,
    armcd,
    actual_arm,
    is_screen_failure,
    is_randomized,
    screening_date,
    screen_fail_date,
    screen_fail_reason,
    randomization_date,
    on_study_date,
    end_of_study_reason,
    end_of_study_date,
    {{ flag("is_randomized and end_of_study_reason = 'COMPLETED'") }} as is_completed,
    {{ flag("is_randomized and end_of_study_reason is not null and end_of_study_reason <> 'COMPLETED'") }} as is_discontinued,
    {{ flag('is_randomized and end_of_study_reason is null') }} as is_ongoing,
    exposure_end_date,
    case
        when on_study_date is null or exposure_end_date is null then 0
        else greatest(date_diff('day', on_study_date, exposure_end_date) + 1, 0)
    end as days_on_study
from course
