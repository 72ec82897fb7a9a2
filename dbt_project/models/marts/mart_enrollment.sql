-- Enrollment in one long (tidy) table; `metric` says which chart a row serves:
--   enrollment          one row per site, week and category (screened / randomized): value = new
--                       subjects that week, actual_cumulative, and for randomized target_cumulative
--   screen_fail_reason  one row per site and reason: value = screen failures
--   funnel              one row per site and stage (selected, activated, first_screened,
--                       first_randomized): value = 1 when the site reached it (sum = sites)
with studies as (
    select tenant_id, study_id, data_cut_date, has_sites
    from {{ ref('dim_study') }}
    where {{ partition_filter() }}
),

sites as (
    select tenant_id, study_id, site_id, cro, selected_date, activation_date, target_enrollment, is_in_site_table
    from {{ ref('dim_site') }}
    where {{ partition_filter() }}
),

subjects as (
    select tenant_id, study_id, site_id, usubjid, screening_date, randomization_date, is_screen_failure, screen_fail_reason
    from {{ ref('fact_subject_disposition') }}
    where {{ partition_filter() }}
),

-- Planned end of enrollment: the data has no plan, so the date the last subject was screened
-- (the enrollment period actually used) stands in for it, else the data cut. Each site's target
-- is spread linearly from its activation to that date.
study_span as (
    select
        st.tenant_id as tenant_id,
        st.study_id as study_id,
        coalesce(sub.last_screening_date, st.data_cut_date) as plan_end_date,
        {{ week_start('least(coalesce(sub.first_screening_date, si.first_activation_date), coalesce(si.first_activation_date, sub.first_screening_date))') }} as first_week,
        {{ week_start('st.data_cut_date') }} as last_week
    from studies as st
    left join (
        select tenant_id, study_id, min(screening_date) as first_screening_date, max(screening_date) as last_screening_date
        from subjects
        group by tenant_id, study_id
    ) as sub
        on sub.tenant_id = st.tenant_id and sub.study_id = st.study_id
    left join (
        select tenant_id, study_id, min(activation_date) as first_activation_date
        from sites
        group by tenant_id, study_id
    ) as si
        on si.tenant_id = st.tenant_id and si.study_id = st.study_id
),

weeks as (
    select
        s.tenant_id as tenant_id,
        s.study_id as study_id,
        s.plan_end_date as plan_end_date,
        {{ add_days('s.first_week', '7 * i.n') }} as week_start
    from study_span as s
    cross join {{ integers(4) }} as i
    where s.first_week is not null and 7 * i.n <= date_diff('day', s.first_week, s.last_week)
),

events as (
    select tenant_id, study_id, site_id, 'screened' as category, {{ week_start('screening_date') }} as week_start
    from subjects
    where screening_date is not null
    union all
    select tenant_id, study_id, site_id, 'randomized', {{ week_start('randomization_date') }}
    from subjects
    where randomization_date is not null
),

weekly as (
    select tenant_id, study_id, site_id, category, week_start, count(*) as n_new
    from events
    group by tenant_id, study_id, site_id, category, week_start
),

categories as (
    select 'screened' as category, 1 as sort_order
    union all
    select 'randomized', 2
),

grid as (
    select
        w.tenant_id as tenant_id,
        w.study_id as study_id,
        si.site_id as site_id,
        si.cro as cro,
        c.category as category,
        c.sort_order as sort_order,
        w.week_start as week_start,
        coalesce(n.n_new, 0) as n_new,
        case
            when c.category <> 'randomized' or si.target_enrollment is null or si.activation_date is null
                then {{ cast_as('null', 'double') }}
            when date_diff('day', si.activation_date, {{ add_days('w.week_start', 6) }}) < 0 then 0.0
            when date_diff('day', si.activation_date, w.plan_end_date) <= 0 then {{ cast_as('si.target_enrollment', 'double') }}
            else si.target_enrollment * least(
                1.0,
                {{ cast_as("date_diff('day', si.activation_date, " ~ add_days('w.week_start', 6) ~ ")", 'double') }}
                / date_diff('day', si.activation_date, w.plan_end_date)
            )
        end as target_cumulative
    from weeks as w
    inner join sites as si
        on si.tenant_id = w.tenant_id and si.study_id = w.study_id
    cross join categories as c
    left join weekly as n
        on n.tenant_id = w.tenant_id and n.study_id = w.study_id and n.site_id = si.site_id
        and n.category = c.category and n.week_start = w.week_start
),

enrollment as (
    select
        tenant_id,
        study_id,
        'enrollment' as metric,
        category,
        sort_order,
        week_start,
        site_id,
        cro,
        n_new as value,
        sum(n_new) over (
            partition by tenant_id, study_id, site_id, category
            order by week_start rows between unbounded preceding and current row
        ) as actual_cumulative,
        target_cumulative
    from grid
),

screen_fail_reasons as (
    select
        s.tenant_id as tenant_id,
        s.study_id as study_id,
        'screen_fail_reason' as metric,
        s.screen_fail_reason as category,
        {{ cast_as('null', 'bigint') }} as sort_order,
        {{ cast_as('null', 'date') }} as week_start,
        s.site_id as site_id,
        si.cro as cro,
        count(*) as value
    from subjects as s
    left join sites as si
        on si.tenant_id = s.tenant_id and si.study_id = s.study_id and si.site_id = s.site_id
    where s.is_screen_failure
    group by s.tenant_id, s.study_id, s.screen_fail_reason, s.site_id, si.cro
),

site_milestones as (
    select
        si.tenant_id as tenant_id,
        si.study_id as study_id,
        si.site_id as site_id,
        si.cro as cro,
        st.has_sites as has_sites,
        si.is_in_site_table as is_selected,
        si.selected_date as selected_date,
        si.activation_date as activation_date,
        sub.first_screening_date as first_screening_date,
        sub.first_randomization_date as first_randomization_date,
        coalesce(sub.n_screened, 0) as n_screened,
        coalesce(sub.n_randomized, 0) as n_randomized
    from sites as si
    left join studies as st
        on st.tenant_id = si.tenant_id and st.study_id = si.study_id
    left join (
        select
            tenant_id,
            study_id,
            site_id,
            count(*) as n_screened,
            count(randomization_date) as n_randomized,
            min(screening_date) as first_screening_date,
            min(randomization_date) as first_randomization_date
        from subjects
        group by tenant_id, study_id, site_id
    ) as sub
        on sub.tenant_id = si.tenant_id and sub.study_id = si.study_id and sub.site_id = si.site_id
),

-- Selection and activation exist only in an EDC site table: without one those stages are absent.
funnel as (
    select tenant_id, study_id, 'funnel' as metric, 'selected' as category, 1 as sort_order,
        {{ week_start('selected_date') }} as week_start, site_id, cro,
        case when is_selected then 1 else 0 end as value
    from site_milestones
    where has_sites
    union all
    select tenant_id, study_id, 'funnel', 'activated', 2, {{ week_start('activation_date') }}, site_id, cro,
        case when activation_date is not null then 1 else 0 end
    from site_milestones
    where has_sites
    union all
    select tenant_id, study_id, 'funnel', 'first_screened', 3, {{ week_start('first_screening_date') }}, site_id, cro,
        case when n_screened > 0 then 1 else 0 end
    from site_milestones
    union all
    select tenant_id, study_id, 'funnel', 'first_randomized', 4, {{ week_start('first_randomization_date') }}, site_id, cro,
        case when n_randomized > 0 then 1 else 0 end
    from site_milestones
)

select
    tenant_id, study_id, metric, category, {{ cast_as('sort_order', 'bigint') }} as sort_order,
    week_start, site_id, cro, {{ cast_as('value', 'bigint') }} as value,
    {{ cast_as('actual_cumulative', 'bigint') }} as actual_cumulative, target_cumulative
from enrollment
union all
select
    tenant_id, study_id, metric, category, sort_order, week_start, site_id, cro,
    {{ cast_as('value', 'bigint') }}, {{ cast_as('null', 'bigint') }}, {{ cast_as('null', 'double') }}
from screen_fail_reasons
union all
select
    tenant_id, study_id, metric, category, {{ cast_as('sort_order', 'bigint') }}, week_start, site_id, cro,
    {{ cast_as('value', 'bigint') }}, {{ cast_as('null', 'bigint') }}, {{ cast_as('null', 'double') }}
from funnel
