-- Wasserstein distance per synthesis run and variable with its alert level (asset evidence_pack);
-- empty until it has run.
select
    tenant_id,
    study_id,
    run_id,
    variable,
    value as distance,
    level as alert_level,
    threshold_warn,
    threshold_fail,
    created_at
from {{ lake_table('analytics', 'evidence_metrics') }} as m
where {{ partition_filter() }} and metric = 'wasserstein'
