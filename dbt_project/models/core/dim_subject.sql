-- One row per screened subject (DM) with randomization, key dates and disposition.
with dm as (
    select *
    from {{ ref('stg_dm') }}
    where {{ partition_filter() }}
),

ds as (
    select tenant_id, study_id, usubjid, seq, decod, category, start_date
    from {{ ref('stg_ds') }}
    where {{ partition_filter() }}
),

-- Latest disposition event per subject (DSCAT 'DISPOSITION EVENT', or no category given).
disposition_ranked as (
    select
        tenant_id,
        study_id,
        usubjid,
        decod,
        row_number() over (
            partition by tenant_id, study_id, usubjid
            order by start_date desc nulls last, seq desc nulls last
        ) as rn
    from ds
    where category is null or upper(category) = 'DISPOSITION EVENT'
),

disposition as (
    select tenant_id, study_id, usubjid, upper(decod) as last_disposition
    from disposition_ranked
    where rn = 1
),

ds_flags as (
    select
        tenant_id,
        study_id,
        usubjid,
        max(case when upper(decod) = 'SCREEN FAILURE' then 1 else 0 end) as n_screen_failure,
        min(case when upper(decod) = 'INFORMED CONSENT OBTAINED' then start_date end) as consent_milestone_date
    from ds
    group by tenant_id, study_id, usubjid
),

-- Last date the subject is known to have been in contact: reference end, visits, disposition.
contact_dates as (
    select tenant_id, study_id, usubjid, reference_end_date as contact_date from dm
    union all
    select tenant_id, study_id, usubjid, visit_start_date from {{ ref('stg_sv') }} where {{ partition_filter() }}
    union all
    select tenant_id, study_id, usubjid, visit_end_date from {{ ref('stg_sv') }} where {{ partition_filter() }}
    union all
    select tenant_id, study_id, usubjid, start_date from ds
),

last_contact as (
    select tenant_id, study_id, usubjid, max(contact_date) as last_known_date
    from contact_dates
    group by tenant_id, study_id, usubjid
),

subjects as (
    select
        dm.tenant_id as tenant_id,
        dm.study_id as study_id,
        dm.usubjid as usubjid,
        dm.subjid as subjid,
        dm.site_id as site_id,
        dm.arm as arm,
        dm.armcd as armcd,
        dm.actual_arm as actual_arm,
        dm.actual_armcd as actual_armcd,
        dm.age as age,
        dm.sex as sex,
        dm.race as race,
        dm.ethnicity as ethnicity,
        dm.country as country,
        coalesce(dm.informed_consent_date, f.consent_milestone_date) as informed_consent_date,
        dm.reference_start_date as first_dose_date,
        lc.last_known_date as last_known_date,
        d.last_disposition as last_disposition,
        case
            when upper(coalesce(dm.armcd, '')) = 'SCRNFAIL' or coalesce(f.n_screen_failure, 0) = 1 then 1
            else 0
        end as n_screen_failure
    from dm
    left join ds_flags as f
        on f.tenant_id = dm.tenant_id and f.study_id = dm.study_id and f.usubjid = dm.usubjid
    left join disposition as d
        on d.tenant_id = dm.tenant_id and d.study_id = dm.study_id and d.usubjid = dm.usubjid
    left join last_contact as lc
        on lc.tenant_id = dm.tenant_id and lc.study_id = dm.study_id and lc.usubjid = dm.usubjid
)

select
    tenant_id,
    study_id,
    usubjid,
    {{ surrogate_key(['tenant_id', 'study_id', 'usubjid']) }} as subject_key,
    subjid,
    site_id,
    arm,
    armcd,
    actual_arm,
    actual_armcd,
    age,
    sex,
    race,
    ethnicity,
    country,
    true as is_screened,
    {{ flag('n_screen_failure = 1') }} as is_screen_failure,
    {{ flag("n_screen_failure = 0 and armcd is not null and upper(armcd) not in ('SCRNFAIL', 'NOTASSGN', 'NOTTRT')") }} as is_randomized,
    informed_consent_date,
    first_dose_date,
    last_known_date,
    case
        when last_disposition is not null then last_disposition
        when n_screen_failure = 1 then 'SCREEN FAILURE'
        else 'ONGOING'
    end as disposition_status
from subjects
