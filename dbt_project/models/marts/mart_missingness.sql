-- % missing by variable x visit x site, per tenant/study (cells defined in fact_missingness_cell).
-- is_scheduled: the protocol collects the variable at that visit number, by the rule of the Dagster
-- asset study_matrix (assets/study_data.py, SCHEDULED_SHARE): at least that share of the visit's
-- expected cells, study-wide, is observed. "% missing" counts scheduled cells only, in Dagster
-- (missingness_profile's pct_missing_scheduled) and in Superset alike. This is the one place the
-- rule is written: mart_missingness_trend reads is_scheduled from this mart.
{%- set scheduled_share = var('missingness_scheduled_share', 0.5) %}
with cells as (
    select tenant_id, study_id, site_id, domain, variable, visitnum, is_missing
    from {{ ref('fact_missingness_cell') }}
    where {{ partition_filter() }}
),

visits as (
    select tenant_id, study_id, visitnum, visit
    from {{ ref('dim_visit') }}
    where {{ partition_filter() }}
),

counts as (
    select
        tenant_id,
        study_id,
        site_id,
        domain,
        variable,
        visitnum,
        count(*) as n_expected,
        sum(case when is_missing then 0 else 1 end) as n_observed,
        sum(case when is_missing then 1 else 0 end) as n_missing
    from cells
    group by tenant_id, study_id, site_id, domain, variable, visitnum
),

scheduled as (
    select
        *,
        {{ flag(cast_as('sum(n_observed) over (partition by tenant_id, study_id, domain, variable, visitnum)', 'double')
                ~ ' >= ' ~ scheduled_share ~ ' * sum(n_expected) over (partition by tenant_id, study_id, domain, variable, visitnum)') }} as is_scheduled
    from counts
)

select
    c.tenant_id as tenant_id,
    c.study_id as study_id,
    c.site_id as site_id,
    c.domain as domain,
    c.variable as variable,
    c.visitnum as visitnum,
    v.visit as visit,
    c.n_expected as n_expected,
    c.n_observed as n_observed,
    c.n_missing as n_missing,
    100 * {{ cast_as('c.n_missing', 'double') }} / c.n_expected as pct_missing,
    c.is_scheduled as is_scheduled
from scheduled as c
left join visits as v
    on v.tenant_id = c.tenant_id and v.study_id = c.study_id and v.visitnum = c.visitnum
