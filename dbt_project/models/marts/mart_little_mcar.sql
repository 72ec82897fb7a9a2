-- Little's MCAR test per study and domain group (asset missingness_profile); empty until it has run.
select
    tenant_id,
    study_id,
    variable_group,
    statistic,
    df,
    p_value,
    n_patterns,
    n_rows,
    n_variables,
    conclusion
from {{ lake_table('analytics', 'little_mcar') }} as l
where {{ partition_filter() }}
