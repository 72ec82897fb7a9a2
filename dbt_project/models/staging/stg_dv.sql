-- Protocol deviations (0 rows for a study that sent none).
select
    tenant_id,
    study_id,
    {{ text('USUBJID') }} as usubjid,
    {{ cast_as('DVSEQ', 'bigint') }} as seq,
    {{ text('DVTERM') }} as reported_term,
    {{ text('DVDECOD') }} as decod,
    {{ text('DVCAT') }} as category,
    {{ text('DVSCAT') }} as subcategory,
    {{ text('DVSTDTC') }} as start_dtc,
    {{ iso_date('DVSTDTC') }} as start_date,
    _drop_id as drop_id,
    _source_file as source_file,
    _source_row as source_row
from {{ bronze('dv') }}
