-- Lineage verification status per tenant/study (asset lineage_verification); empty until it has run.
-- Ephemeral, not a view: the file changes at every verification, outside dbt, so a view's rows would
-- no longer match the hash lineage recorded when dbt built it; the mart materializes them instead.
{{ config(materialized='ephemeral') }}
select
    tenant_id,
    study_id,
    verified_at,
    {{ iso_date('verified_at') }} as verified_date,
    status,
    manifests,
    checkpoints,
    outputs_checked,
    problems,
    warnings,
    first_broken_link,
    store
from {{ lake_table('analytics', 'lineage_status') }} as s
