-- Kaplan-Meier time to study discontinuation by planned arm, as computed by the Dagster asset
-- km_discontinuation (models/rbqm/km.py); absent for a partition until that asset has run.
select
    tenant_id,
    study_id,
    arm,
    time_days,
    survival,
    at_risk,
    events,
    censored,
    ci_lower,
    ci_upper
from {{ lake_table('analytics', 'km_discontinuation') }} as km
where {{ partition_filter() }}
