-- Which domains each tenant/study drop really contained.
select
    tenant_id,
    study_id,
    domain,
    present as is_present,
    "rows" as declared_rows
from {{ bronze('domains') }}
