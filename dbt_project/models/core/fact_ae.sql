-- Adverse events, one row per AE record, with MedDRA hierarchy and reporting timeliness.
with subjects as (
    select tenant_id, study_id, usubjid, site_id
    from {{ ref('stg_dm') }}
    where {{ partition_filter() }}
),

ae as (
    select *
    from {{ ref('stg_ae') }}
    where {{ partition_filter() }}
)

select
    ae.tenant_id as tenant_id,
    ae.study_id as study_id,
    ae.usubjid as usubjid,
    s.site_id as site_id,
    ae.seq as seq,
    {{ surrogate_key(['ae.tenant_id', 'ae.study_id', 'ae.usubjid', 'ae.seq']) }} as ae_key,
    ae.reported_term as reported_term,
    ae.soc as soc,
    ae.hlgt as hlgt,
    ae.preferred_term as pt,
    upper(ae.severity) as severity,
    {{ flag("upper(coalesce(ae.serious, '')) = 'Y'") }} as is_serious,
    ae.causality as causality,
    ae.outcome as outcome,
    ae.onset_dtc as onset_dtc,
    ae.onset_date as onset_date,
    ae.end_date as end_date,
    ae.onset_study_day as onset_study_day,
    ae.entry_date as entry_date,
    date_diff('day', ae.onset_date, ae.entry_date) as days_onset_to_entry
from ae
left join subjects as s
    on s.tenant_id = ae.tenant_id and s.study_id = ae.study_id and s.usubjid = ae.usubjid
