-- Cumulative % missing per tenant/study/variable by week of data entry: each expected cell counts
-- from the week of its basis_date (CRF page entry date when the study has a page log, else the
-- observation date; see fact_missingness_cell). Cells without any date are left out.
with cells as (
    select tenant_id, study_id, domain, variable, time_basis, is_missing, {{ week_start('basis_date') }} as week_start
    from {{ ref('fact_missingness_cell') }}
    where {{ partition_filter() }} and basis_date is not null
),

weekly as (
    select
        tenant_id,
        study_id,
        domain,
        variable,
        time_basis,
        week_start,
        count(*) as n_expected_week,
        sum(case when is_missing then 1 else 0 end) as n_missing_week
    from cells
    group by tenant_id, study_id, domain, variable, time_basis, week_start
),

cumulative as (
    select
        tenant_id,
        study_id,
        domain,
        variable,
        time_basis,
        week_start,
        n_expected_week,
        n_missing_week,
        sum(n_expected_week) over (
            partition by tenant_id, study_id, domain, variable
            order by week_start rows between unbounded preceding and current row
        ) as cum_expected,
        sum(n_missing_week) over (
            partition by tenant_id, study_id, domain, variable
            order by week_start rows between unbounded preceding and current row
        ) as cum_missing
    from weekly
)

select
    tenant_id,
    study_id,
    domain,
    variable,
    time_basis,
    week_start,
    n_expected_week,
    n_missing_week,
    cum_expected,
    cum_missing,
    100 * {{ cast_as('cum_missing', 'double') }} / cum_expected as cum_pct_missing
from cumulative
