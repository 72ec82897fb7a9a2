-- One row per site of a study: from the EDC site table when the study sent one, else derived
-- from the sites seen in DM (activation date, CRO and target enrollment then stay NULL).
with subjects as (
    select tenant_id, study_id, site_id, country, is_randomized, informed_consent_date
    from {{ ref('dim_subject') }}
    where {{ partition_filter() }}
),

site_table as (
    select *
    from {{ ref('stg_sites') }}
    where {{ partition_filter() }}
),

studies as (
    select tenant_id, study_id, has_sites
    from {{ ref('dim_study') }}
    where {{ partition_filter() }}
),

enrollment as (
    select
        tenant_id,
        study_id,
        site_id,
        count(*) as n_subjects_screened,
        sum(case when is_randomized then 1 else 0 end) as n_subjects_randomized,
        min(informed_consent_date) as first_consent_date
    from subjects
    group by tenant_id, study_id, site_id
),

-- Most frequent subject country per site (ties: alphabetical), for studies without a site table.
country_counts as (
    select tenant_id, study_id, site_id, country, count(*) as n
    from subjects
    where country is not null
    group by tenant_id, study_id, site_id, country
),

dm_country as (
    select tenant_id, study_id, site_id, country
    from (
        select
            tenant_id,
            study_id,
            site_id,
            country,
            row_number() over (partition by tenant_id, study_id, site_id order by n desc, country) as rn
        from country_counts
    ) as ranked
    where rn = 1
),

all_sites as (
    select distinct tenant_id, study_id, site_id
    from (
        select tenant_id, study_id, site_id from enrollment
        union all
        select tenant_id, study_id, site_id from site_table
    ) as ids
    where site_id is not null
)

select
    s.tenant_id as tenant_id,
    s.study_id as study_id,
    s.site_id as site_id,
    {{ surrogate_key(['s.tenant_id', 's.study_id', 's.site_id']) }} as site_key,
    t.site_name as site_name,
    coalesce(t.country, c.country) as country,
    t.cro as cro,
    t.selected_date as selected_date,
    t.activation_date as activation_date,
    t.target_enrollment as target_enrollment,
    coalesce(st.has_sites, false) as has_site_table,
    {{ flag('t.site_id is not null') }} as is_in_site_table,
    coalesce(e.n_subjects_screened, 0) as n_subjects_screened,
    coalesce(e.n_subjects_randomized, 0) as n_subjects_randomized,
    e.first_consent_date as first_consent_date
from all_sites as s
left join site_table as t
    on t.tenant_id = s.tenant_id and t.study_id = s.study_id and t.site_id = s.site_id
left join dm_country as c
    on c.tenant_id = s.tenant_id and c.study_id = s.study_id and c.site_id = s.site_id
left join enrollment as e
    on e.tenant_id = s.tenant_id and e.study_id = s.study_id and e.site_id = s.site_id
left join studies as st
    on st.tenant_id = s.tenant_id and st.study_id = s.study_id
