-- EDC CRF page entry log: visit date vs data-entry date (0 rows for a study that sent none).
select
    tenant_id,
    study_id,
    {{ text('SITEID') }} as site_id,
    {{ text('USUBJID') }} as usubjid,
    {{ text('CRFPAGE') }} as crf_page,
    VISITNUM as visitnum,
    {{ text('VISIT_DATE') }} as visit_dtc,
    {{ iso_date('VISIT_DATE') }} as visit_date,
    {{ text('ENTRY_DATE') }} as entry_dtc,
    {{ iso_date('ENTRY_DATE') }} as entry_date,
    _drop_id as drop_id,
    _source_file as source_file,
    _source_row as source_row
from {{ bronze('crf_pages') }}
