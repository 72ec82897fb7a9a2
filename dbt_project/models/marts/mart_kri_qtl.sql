-- Site-level key risk indicators with funnel-plot z-scores against the study-wide rate, adjusted
-- for over-dispersion (Spiegelhalter 2005), and the study-level quality tolerance limits.
-- Model per KRI: poisson (events per exposure), binomial (share), mean (days, normal approximation).
{%- set late_days = var('crf_late_entry_days') %}
{%- set mins = var('kri_min_denominator') %}
{%- set winsor = var('kri_winsorize') %}
{#- kri, label, unit, numerator, denominator, denominator unit, model, scale of the rate, the
    domains the study must have sent for the KRI to exist -#}
{%- set kris = [
    ('ae_rate', 'Adverse events', 'per 1,000 subject-days', 'n_ae', 'subject_days', 'subject_days', 'poisson', 1000, ['ae']),
    ('sae_rate', 'Serious adverse events', 'per 1,000 subject-days', 'n_sae', 'subject_days', 'subject_days', 'poisson', 1000, ['ae']),
    ('important_pd_rate', 'Important protocol deviations', 'per 1,000 subject-days', 'n_important_pd', 'subject_days', 'subject_days', 'poisson', 1000, ['dv']),
    ('non_important_pd_rate', 'Non-important protocol deviations', 'per 1,000 subject-days', 'n_non_important_pd', 'subject_days', 'subject_days', 'poisson', 1000, ['dv']),
    ('discontinuation_rate', 'Study discontinuation', 'share of randomized subjects', 'n_discontinued', 'n_randomized', 'subjects', 'binomial', 1, ['ds']),
    ('query_rate', 'Queries', 'per 100 CRF pages entered', 'n_queries', 'n_pages_entered', 'crf_pages', 'poisson', 100, ['queries', 'crf_pages']),
    ('query_open_30d_rate', 'Queries open > ' ~ var('query_open_alarm_days') ~ ' days at the data cut', 'share of queries', 'n_queries_open_long', 'n_queries', 'queries', 'binomial', 1, ['queries']),
    ('late_crf_entry_rate', 'CRF pages entered > ' ~ late_days ~ ' days after the visit', 'share of CRF pages', 'n_pages_late', 'n_pages_assessable', 'crf_pages', 'binomial', 1, ['crf_pages']),
    ('screen_fail_rate', 'Screen failures', 'share of screened subjects', 'n_screen_failures', 'n_screened', 'subjects', 'binomial', 1, ['dm']),
    ('ae_reporting_days', 'AE reporting time (onset to EDC entry)', 'mean days', 'ae_report_days', 'n_ae_reports', 'ae_reports', 'mean', 1, ['ae']),
] %}

with studies as (
    select tenant_id, study_id, data_cut_date
    from {{ ref('dim_study') }}
    where {{ partition_filter() }}
),

presence as (
    select
        tenant_id,
        study_id,
        {%- for domain in var('trialsynth_domains') %}
        max(case when domain = '{{ domain }}' and is_present then 1 else 0 end) as has_{{ domain }}
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ ref('stg_domains') }}
    where {{ partition_filter() }}
    group by tenant_id, study_id
),

aes as (
    select tenant_id, study_id, usubjid, site_id, is_serious, days_onset_to_entry
    from {{ ref('fact_ae') }}
    where {{ partition_filter() }}
),

deviations as (
    select tenant_id, study_id, usubjid, upper(subcategory) as subcategory
    from {{ ref('stg_dv') }}
    where {{ partition_filter() }}
),

pages as (
    select tenant_id, study_id, site_id, visit_date, entry_date
    from {{ ref('stg_crf_pages') }}
    where {{ partition_filter() }}
),

-- A study whose AEs carry no EDC entry date (AEENTDTC) has no reporting-time KRI.
ae_entry as (
    select tenant_id, study_id, max(case when days_onset_to_entry is not null then 1 else 0 end) as has_ae_entry
    from aes
    group by tenant_id, study_id
),

sites as (
    select tenant_id, study_id, site_id, cro
    from {{ ref('dim_site') }}
    where {{ partition_filter() }}
),

subjects as (
    select tenant_id, study_id, usubjid, site_id, is_screen_failure, is_randomized, is_discontinued, days_on_study
    from {{ ref('fact_subject_disposition') }}
    where {{ partition_filter() }}
),

subject_counts as (
    select
        tenant_id,
        study_id,
        site_id,
        count(*) as n_screened,
        sum(case when is_screen_failure then 1 else 0 end) as n_screen_failures,
        sum(case when is_randomized then 1 else 0 end) as n_randomized,
        sum(case when is_discontinued then 1 else 0 end) as n_discontinued,
        sum(days_on_study) as subject_days
    from subjects
    group by tenant_id, study_id, site_id
),

-- AEs of subjects with time on study (the exposure they are counted against); reporting time
-- over every AE with both dates (an entry before onset is a data error fact_ae's test reports).
ae_counts as (
    select
        a.tenant_id as tenant_id,
        a.study_id as study_id,
        a.site_id as site_id,
        sum(case when s.days_on_study > 0 then 1 else 0 end) as n_ae,
        sum(case when s.days_on_study > 0 and a.is_serious then 1 else 0 end) as n_sae,
        sum(case when a.days_onset_to_entry >= 0 then 1 else 0 end) as n_ae_reports,
        sum(case when a.days_onset_to_entry >= 0 then a.days_onset_to_entry else 0 end) as ae_report_days,
        sum(case when a.days_onset_to_entry >= 0 then a.days_onset_to_entry * a.days_onset_to_entry else 0 end) as ae_report_days_sq
    from aes as a
    left join subjects as s
        on s.tenant_id = a.tenant_id and s.study_id = a.study_id and s.usubjid = a.usubjid
    group by a.tenant_id, a.study_id, a.site_id
),

deviation_counts as (
    select
        d.tenant_id as tenant_id,
        d.study_id as study_id,
        s.site_id as site_id,
        sum(case when d.subcategory = 'IMPORTANT' then 1 else 0 end) as n_important_pd,
        sum(case when d.subcategory = 'NON-IMPORTANT' then 1 else 0 end) as n_non_important_pd
    from deviations as d
    inner join subjects as s
        on s.tenant_id = d.tenant_id and s.study_id = d.study_id and s.usubjid = d.usubjid
    group by d.tenant_id, d.study_id, s.site_id
),

query_counts as (
    select
        tenant_id,
        study_id,
        site_id,
        count(*) as n_queries,
        sum(case when is_open_over_30_days then 1 else 0 end) as n_queries_open_long
    from {{ ref('fact_query') }}
    where {{ partition_filter() }}
    group by tenant_id, study_id, site_id
),

-- A page is late when entered more than crf_late_entry_days after its visit, or still not entered
-- that long after the visit at the data cut; pages whose visit is more recent and not yet entered
-- cannot be judged and are left out of the denominator.
page_counts as (
    select
        p.tenant_id as tenant_id,
        p.study_id as study_id,
        p.site_id as site_id,
        sum(case when p.entry_date is not null then 1 else 0 end) as n_pages_entered,
        sum(case
            when p.visit_date is not null
                and (p.entry_date is not null or date_diff('day', p.visit_date, st.data_cut_date) > {{ late_days }})
            then 1 else 0
        end) as n_pages_assessable,
        sum(case
            when p.visit_date is not null
                and date_diff('day', p.visit_date, coalesce(p.entry_date, st.data_cut_date)) > {{ late_days }}
            then 1 else 0
        end) as n_pages_late
    from pages as p
    left join studies as st
        on st.tenant_id = p.tenant_id and st.study_id = p.study_id
    group by p.tenant_id, p.study_id, p.site_id
),

site_stats as (
    select
        s.tenant_id as tenant_id,
        s.study_id as study_id,
        s.site_id as site_id,
        s.cro as cro,
        {{ cast_as('coalesce(sc.n_screened, 0)', 'bigint') }} as n_screened,
        {{ cast_as('coalesce(sc.n_screen_failures, 0)', 'bigint') }} as n_screen_failures,
        {{ cast_as('coalesce(sc.n_randomized, 0)', 'bigint') }} as n_randomized,
        {{ cast_as('coalesce(sc.n_discontinued, 0)', 'bigint') }} as n_discontinued,
        {{ cast_as('coalesce(sc.subject_days, 0)', 'bigint') }} as subject_days,
        {{ cast_as('coalesce(a.n_ae, 0)', 'bigint') }} as n_ae,
        {{ cast_as('coalesce(a.n_sae, 0)', 'bigint') }} as n_sae,
        {{ cast_as('coalesce(a.n_ae_reports, 0)', 'bigint') }} as n_ae_reports,
        {{ cast_as('coalesce(a.ae_report_days, 0)', 'bigint') }} as ae_report_days,
        {{ cast_as('coalesce(a.ae_report_days_sq, 0)', 'double') }} as ae_report_days_sq,
        {{ cast_as('coalesce(d.n_important_pd, 0)', 'bigint') }} as n_important_pd,
        {{ cast_as('coalesce(d.n_non_important_pd, 0)', 'bigint') }} as n_non_important_pd,
        {{ cast_as('coalesce(q.n_queries, 0)', 'bigint') }} as n_queries,
        {{ cast_as('coalesce(q.n_queries_open_long, 0)', 'bigint') }} as n_queries_open_long,
        {{ cast_as('coalesce(p.n_pages_entered, 0)', 'bigint') }} as n_pages_entered,
        {{ cast_as('coalesce(p.n_pages_assessable, 0)', 'bigint') }} as n_pages_assessable,
        {{ cast_as('coalesce(p.n_pages_late, 0)', 'bigint') }} as n_pages_late,
        {%- for domain in var('trialsynth_domains') %}
        coalesce(pr.has_{{ domain }}, 0) as has_{{ domain }},
        {%- endfor %}
        coalesce(ae.has_ae_entry, 0) as has_ae_entry
    from sites as s
    left join subject_counts as sc
        on sc.tenant_id = s.tenant_id and sc.study_id = s.study_id and sc.site_id = s.site_id
    left join ae_counts as a
        on a.tenant_id = s.tenant_id and a.study_id = s.study_id and a.site_id = s.site_id
    left join deviation_counts as d
        on d.tenant_id = s.tenant_id and d.study_id = s.study_id and d.site_id = s.site_id
    left join query_counts as q
        on q.tenant_id = s.tenant_id and q.study_id = s.study_id and q.site_id = s.site_id
    left join page_counts as p
        on p.tenant_id = s.tenant_id and p.study_id = s.study_id and p.site_id = s.site_id
    left join presence as pr
        on pr.tenant_id = s.tenant_id and pr.study_id = s.study_id
    left join ae_entry as ae
        on ae.tenant_id = s.tenant_id and ae.study_id = s.study_id
),

-- The KRI definitions as rows, crossed with site_stats: one row per site and KRI the study has
-- the data for. (Every CTE below is read once: ClickHouse inlines CTEs at each reference.)
kri_list as (
    {%- for kri, label, unit, numerator, denominator, denominator_unit, model, scale, needs in kris %}
    select
        '{{ kri }}' as kri, '{{ label }}' as kri_label, '{{ unit }}' as unit, '{{ model }}' as model,
        {{ cast_as(scale, 'double') }} as scale, '{{ denominator_unit }}' as denominator_unit,
        {{ cast_as(mins[denominator_unit], 'bigint') }} as min_denominator
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

kri_inputs as (
    select
        s.tenant_id as tenant_id,
        s.study_id as study_id,
        s.site_id as site_id,
        s.cro as cro,
        k.kri as kri,
        k.kri_label as kri_label,
        k.unit as unit,
        k.model as model,
        k.scale as scale,
        k.denominator_unit as denominator_unit,
        k.min_denominator as min_denominator,
        {%- for index, name in [(3, 'numerator'), (4, 'denominator')] %}
        {%- set picks = [] %}
        {%- for definition in kris %}
            {%- do picks.append("when '" ~ definition[0] ~ "' then s." ~ definition[index]) %}
        {%- endfor %}
        {{ cast_as('case k.kri ' ~ picks | join(' ') ~ ' end', 'bigint') }} as {{ name }},
        {%- endfor %}
        {{ cast_as("case when k.model = 'mean' then s.ae_report_days_sq else 0 end", 'double') }} as numerator_sq
    from site_stats as s
    cross join kri_list as k
    where
        {%- for kri, label, unit, numerator, denominator, denominator_unit, model, scale, needs in kris %}
        (k.kri = '{{ kri }}'{% for domain in needs %} and s.has_{{ domain }} = 1{% endfor %}{{ ' and s.has_ae_entry = 1' if model == 'mean' else '' }})
        {%- if not loop.last %} or{% endif %}
        {%- endfor %}
),

-- Study-wide totals per KRI (all sites): rate p0 per unit of denominator and, for means, the
-- variance of one report.
study_totals as (
    select
        *,
        sum(numerator) over (partition by tenant_id, study_id, kri) as study_numerator,
        sum(denominator) over (partition by tenant_id, study_id, kri) as study_denominator,
        sum(numerator_sq) over (partition by tenant_id, study_id, kri) as study_numerator_sq
    from kri_inputs
),

-- Funnel-plot z of each site against the study rate: (site rate - p0) / SE under p0 with
-- SE = sqrt(p0 / n) (poisson), sqrt(p0 (1 - p0) / n) (binomial), sqrt(s^2 / n) (mean).
rated as (
    select
        *,
        case when denominator > 0 then {{ cast_as('numerator', 'double') }} / denominator end as site_p,
        case when study_denominator > 0 then {{ cast_as('study_numerator', 'double') }} / study_denominator end as p0,
        case
            when model = 'mean' and study_denominator > 1
            then greatest(
                (study_numerator_sq - {{ cast_as('study_numerator', 'double') }} * study_numerator / study_denominator)
                / (study_denominator - 1),
                0)
        end as mean_variance
    from study_totals
),

variances as (
    select
        *,
        case
            when model = 'poisson' then p0
            when model = 'binomial' then p0 * (1 - p0)
            else mean_variance
        end as unit_variance,
        case
            when model = 'poisson' then p0 * denominator
            when model = 'binomial' then least(p0, 1 - p0) * denominator
        end as expected_events
    from rated
),

-- A site is scored when its denominator reaches min_denominator and, for counts and shares, the
-- events expected under the study rate reach kri_min_expected (the normal approximation means
-- nothing below); without any study-wide variation every site has the study rate (z = 0).
eligible as (
    select
        *,
        {{ flag('denominator > 0 and denominator >= min_denominator and (unit_variance = 0 or expected_events is null or expected_events >= ' ~ var('kri_min_expected') ~ ')') }} as is_scored
    from variances
),

z_scores as (
    select
        *,
        case
            when not is_scored then {{ cast_as('null', 'double') }}
            when unit_variance > 0 then (site_p - p0) / sqrt(unit_variance / denominator)
            else 0.0
        end as z_raw
    from eligible
),

-- Over-dispersion factor per study and KRI: phi = sum(z_w^2) / (K - 1) over the K scored sites,
-- z_w winsorized at the kri_winsorize quantiles (Spiegelhalter 2005, "Handling over-dispersion of
-- performance indicators"); phi < 1 (under-dispersion) or K < 2 -> 1.
winsor_bounds as (
    select
        *,
        sum(case when is_scored then 1 else 0 end) over (partition by tenant_id, study_id, kri) as n_scored,
        {{ quantile_cont('z_raw', winsor) }} over (partition by tenant_id, study_id, kri) as z_low,
        {{ quantile_cont('z_raw', 1 - winsor) }} over (partition by tenant_id, study_id, kri) as z_high
    from z_scores
),

winsorized as (
    select
        *,
        -- NULL for unscored sites (DuckDB's greatest/least would skip a NULL argument)
        case when is_scored then least(greatest(z_raw, z_low), z_high) end as z_winsorized
    from winsor_bounds
),

dispersion as (
    select
        *,
        case
            when n_scored >= 2
            then greatest(1.0, sum(z_winsorized * z_winsorized) over (partition by tenant_id, study_id, kri) / (n_scored - 1))
            else 1.0
        end as phi
    from winsorized
),

qtl as (
    select tenant_id, study_id, kri, qtl_name, qtl_limit, direction
    from {{ lake_table('analytics', 'qtl_limits') }} as q
    where {{ partition_filter() }}
),

adjusted as (
    select
        tenant_id,
        study_id,
        site_id,
        cro,
        kri,
        kri_label,
        unit,
        numerator,
        denominator,
        denominator_unit,
        min_denominator,
        expected_events,
        scale * site_p as rate,
        scale * p0 as study_rate,
        z_raw as z_unadjusted,
        phi as overdispersion_phi,
        n_scored as n_sites_scored,
        z_raw / sqrt(phi) as z_score,
        is_scored
    from dispersion
)

select
    a.tenant_id as tenant_id,
    a.study_id as study_id,
    a.site_id as site_id,
    a.cro as cro,
    a.kri as kri,
    a.kri_label as kri_label,
    a.unit as unit,
    a.numerator as numerator,
    a.denominator as denominator,
    a.denominator_unit as denominator_unit,
    a.min_denominator as min_denominator,
    a.expected_events as expected_events,
    a.rate as rate,
    a.study_rate as study_rate,
    a.z_unadjusted as z_unadjusted,
    a.overdispersion_phi as overdispersion_phi,
    a.n_sites_scored as n_sites_scored,
    a.z_score as z_score,
    case
        when not a.is_scored then 'insufficient'
        when abs(a.z_score) >= {{ var('kri_alarm_z') }} then 'alarm'
        when abs(a.z_score) >= {{ var('kri_warn_z') }} then 'warn'
        else 'ok'
    end as flag,
    case when a.rate > a.study_rate then 'above' when a.rate < a.study_rate then 'below' end as direction,
    q.qtl_name as qtl_name,
    q.qtl_limit as qtl_limit,
    q.direction as qtl_direction,
    case
        when q.qtl_limit is null or a.study_rate is null then {{ cast_as('null', 'boolean') }}
        when q.direction = 'below' then {{ flag('a.study_rate < q.qtl_limit') }}
        else {{ flag('a.study_rate > q.qtl_limit') }}
    end as qtl_breached,
    case
        when q.qtl_limit is null or a.rate is null then {{ cast_as('null', 'boolean') }}
        when q.direction = 'below' then {{ flag('a.rate < q.qtl_limit') }}
        else {{ flag('a.rate > q.qtl_limit') }}
    end as site_exceeds_qtl
from adjusted as a
left join qtl as q
    on q.tenant_id = a.tenant_id and q.study_id = a.study_id and q.kri = a.kri
