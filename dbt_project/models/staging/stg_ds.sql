-- Disposition events (screen failures, completions, discontinuations, milestones).
select
    tenant_id,
    study_id,
    {{ text('USUBJID') }} as usubjid,
    {{ cast_as('DSSEQ', 'bigint') }} as seq,
    {{ text('DSTERM') }} as reported_term,
    {{ text('DSDECOD') }} as decod,
    {{ text('DSCAT') }} as category,
    VISITNUM as visitnum,
    {{ text('VISIT') }} as visit,
    {{ text('DSSTDTC') }} as start_dtc,
    {{ iso_date('DSSTDTC') }} as start_date,
    DSSTDY as study_day,
    _drop_id as drop_id,
    _source_file as source_file,
    _source_row as source_row
from {{ bronze('ds') }}
