-- Subject visits, one row per visit that took place.
select
    tenant_id,
    study_id,
    {{ text('USUBJID') }} as usubjid,
    VISITNUM as visitnum,
    {{ text('VISIT') }} as visit,
    VISITDY as planned_study_day,
    {{ text('SVSTDTC') }} as visit_start_dtc,
    {{ iso_date('SVSTDTC') }} as visit_start_date,
    {{ text('SVENDTC') }} as visit_end_dtc,
    {{ iso_date('SVENDTC') }} as visit_end_date,
    _drop_id as drop_id,
    _source_file as source_file,
    _source_row as source_row
from {{ bronze('sv') }}
