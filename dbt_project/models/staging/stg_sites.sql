-- EDC site table (0 rows for a study that sent none).
select
    tenant_id,
    study_id,
    {{ text('SITEID') }} as site_id,
    {{ text('SITENAME') }} as site_name,
    {{ text('COUNTRY') }} as country,
    {{ text('CRO') }} as cro,
    {{ text('SELECTED_DATE') }} as selected_dtc,
    {{ iso_date('SELECTED_DATE') }} as selected_date,
    {{ text('ACTIVATION_DATE') }} as activation_dtc,
    {{ iso_date('ACTIVATION_DATE') }} as activation_date,
    TARGET_ENROLLMENT as target_enrollment,
    _drop_id as drop_id,
    _source_file as source_file,
    _source_row as source_row
from {{ bronze('sites') }}
