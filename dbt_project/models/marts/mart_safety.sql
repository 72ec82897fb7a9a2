-- Adverse events by site, actual arm, MedDRA SOC and HLGT (where the data has it): events,
-- subjects, serious events and time from onset to EDC entry (AEENTDTC).
with aes as (
    select tenant_id, study_id, usubjid, site_id, soc, hlgt, is_serious, days_onset_to_entry
    from {{ ref('fact_ae') }}
    where {{ partition_filter() }}
),

subjects as (
    select tenant_id, study_id, usubjid, coalesce(actual_arm, arm) as arm
    from {{ ref('dim_subject') }}
    where {{ partition_filter() }}
),

sites as (
    select tenant_id, study_id, site_id, cro
    from {{ ref('dim_site') }}
    where {{ partition_filter() }}
),

events as (
    select
        a.tenant_id as tenant_id,
        a.study_id as study_id,
        a.site_id as site_id,
        si.cro as cro,
        s.arm as arm,
        coalesce(a.soc, 'UNCODED') as soc,
        a.hlgt as hlgt,
        a.usubjid as usubjid,
        a.is_serious as is_serious,
        -- an entry before onset is a data error (reported by fact_ae's test), not a reporting time
        case when a.days_onset_to_entry >= 0 then a.days_onset_to_entry end as days_to_report
    from aes as a
    left join subjects as s
        on s.tenant_id = a.tenant_id and s.study_id = a.study_id and s.usubjid = a.usubjid
    left join sites as si
        on si.tenant_id = a.tenant_id and si.study_id = a.study_id and si.site_id = a.site_id
)

select
    tenant_id,
    study_id,
    site_id,
    cro,
    arm,
    soc,
    hlgt,
    count(*) as n_events,
    count(distinct usubjid) as n_subjects,
    sum(case when is_serious then 1 else 0 end) as n_serious,
    count(distinct case when is_serious then usubjid end) as n_subjects_serious,
    {{ cast_as('sum(case when is_serious then 1 else 0 end)', 'double') }} / count(*) as sae_proportion,
    count(days_to_report) as n_reported_with_date,
    sum(days_to_report) as total_days_to_report,
    {{ cast_as(quantile_cont('days_to_report', 0.5), 'double') }} as median_days_to_report
from events
group by tenant_id, study_id, site_id, cro, arm, soc, hlgt
