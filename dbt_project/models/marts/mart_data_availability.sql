-- Per tenant/study and domain: did the study send it, and how many rows reached bronze, so
-- dashboards can say "not available for this study" instead of showing zeros.
{%- set domains = var('trialsynth_domains') %}
with studies as (
    select distinct tenant_id, study_id
    from {{ ref('stg_domains') }}
    where {{ partition_filter() }}
),

domain_list as (
    {% for domain in domains %}
    select '{{ domain }}' as domain
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

declared as (
    select tenant_id, study_id, domain, is_present
    from {{ ref('stg_domains') }}
    where {{ partition_filter() }}
),

loaded as (
    {% for domain in domains %}
    select tenant_id, study_id, '{{ domain }}' as domain, count(*) as n_rows
    from {{ ref('stg_' ~ domain) }}
    where {{ partition_filter() }}
    group by tenant_id, study_id
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select
    s.tenant_id as tenant_id,
    s.study_id as study_id,
    dl.domain as domain,
    coalesce(d.is_present, false) as is_present,
    coalesce(l.n_rows, 0) as row_count,
    case when coalesce(d.is_present, false) then 'available' else 'not available for this study' end as availability
from studies as s
cross join domain_list as dl
left join declared as d
    on d.tenant_id = s.tenant_id and d.study_id = s.study_id and d.domain = dl.domain
left join loaded as l
    on l.tenant_id = s.tenant_id and l.study_id = s.study_id and l.domain = dl.domain
