-- EDC query log, one row per data query (0 rows for a study that sent none).
select
    tenant_id,
    study_id,
    {{ text('QUERYID') }} as query_id,
    {{ text('SITEID') }} as site_id,
    {{ text('USUBJID') }} as usubjid,
    {{ text('CRFPAGE') }} as crf_page,
    VISITNUM as visitnum,
    {{ text('FIELD') }} as field_name,
    {{ text('QUERY_TYPE') }} as query_type,
    {{ text('STATUS') }} as status,
    {{ text('OPENED_DTC') }} as opened_dtc,
    {{ iso_date('OPENED_DTC') }} as opened_date,
    {{ text('ANSWERED_DTC') }} as answered_dtc,
    {{ iso_date('ANSWERED_DTC') }} as answered_date,
    {{ text('CLOSED_DTC') }} as closed_dtc,
    {{ iso_date('CLOSED_DTC') }} as closed_date,
    _drop_id as drop_id,
    _source_file as source_file,
    _source_row as source_row
from {{ bronze('queries') }}
