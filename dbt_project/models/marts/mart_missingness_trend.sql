-- Cumulative % missing per tenant/study/variable by week of data entry: each expected cell counts
-- from the week of its basis_date (CRF page entry date when the study has a page log, else the
-- observation date; see fact_missingness_cell). Cells without any date are left out. The
-- *_scheduled columns count the cells of scheduled visits only: is_scheduled is read from
-- mart_missingness, its one definition (the Dagster study_matrix rule), so the trend and the
-- heatmap can never disagree on which visits count.
with partition_cells as (
    select tenant_id, study_id, domain, variable, visitnum, time_basis, is_missing, basis_date
    from {{ ref('fact_missingness_cell') }}
    where {{ partition_filter() }} and basis_date is not null
),

-- is_scheduled is study-wide (the same on every site row of a visit number): one row per visit
visit_schedule as (
    select distinct tenant_id, study_id, domain, variable, visitnum, is_scheduled
    from {{ ref('mart_missingness') }}
    where {{ partition_filter() }}
),

cells as (
    select
        c.tenant_id as tenant_id,
        c.study_id as study_id,
        c.domain as domain,
        c.variable as variable,
        c.time_basis as time_basis,
        c.is_missing as is_missing,
        v.is_scheduled as is_scheduled,
        {{ week_start('c.basis_date') }} as week_start
    from partition_cells as c
    inner join visit_schedule as v
        on v.tenant_id = c.tenant_id and v.study_id = c.study_id and v.domain = c.domain
        and v.variable = c.variable and v.visitnum = c.visitnum
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
        sum(case when is_missing then 1 else 0 end) as n_missing_week,
        sum(case when is_scheduled then 1 else 0 end) as n_expected_week_scheduled,
        sum(case when is_scheduled and is_missing then 1 else 0 end) as n_missing_week_scheduled
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
        sum(n_expected_week) over up_to_week as cum_expected,
        sum(n_missing_week) over up_to_week as cum_missing,
        sum(n_expected_week_scheduled) over up_to_week as cum_expected_scheduled,
        sum(n_missing_week_scheduled) over up_to_week as cum_missing_scheduled
    from weekly
    window up_to_week as (
        partition by tenant_id, study_id, domain, variable
        order by week_start rows between unbounded preceding and current row
    )
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
    100 * {{ cast_as('cum_missing', 'double') }} / cum_expected as cum_pct_missing,
    cum_expected_scheduled,
    cum_missing_scheduled
from cumulative
