-- Pre vs post imputation per variable and imputer (asset imputed_dataset); empty until it has run.
select
    tenant_id,
    study_id,
    variable,
    imputer,
    n_observed,
    n_imputed,
    pre_mean,
    post_mean,
    pre_sd,
    post_sd,
    delta_mean,
    wasserstein
from {{ lake_table('analytics', 'imputation_delta') }} as d
where {{ partition_filter() }}
