-- One row per tenant/study: which optional EDC tables it has and its data cut (the latest date
-- found anywhere in its data), against which ages such as "query open > 30 days" are measured.
with domains as (
    select tenant_id, study_id, domain, is_present
    from {{ ref('stg_domains') }}
    where {{ partition_filter() }}
),

presence as (
    select
        tenant_id,
        study_id,
        max(case when domain = 'dv' and is_present then 1 else 0 end) as n_dv,
        max(case when domain = 'queries' and is_present then 1 else 0 end) as n_queries,
        max(case when domain = 'sites' and is_present then 1 else 0 end) as n_sites,
        max(case when domain = 'crf_pages' and is_present then 1 else 0 end) as n_crf_pages
    from domains
    group by tenant_id, study_id
),

{%- set dated = [
    ('stg_sv', 'visit_start_date'), ('stg_sv', 'visit_end_date'),
    ('stg_vs', 'obs_date'), ('stg_lb', 'obs_date'),
    ('stg_ae', 'onset_date'), ('stg_ae', 'end_date'), ('stg_ae', 'entry_date'),
    ('stg_ds', 'start_date'), ('stg_dv', 'start_date'),
    ('stg_queries', 'opened_date'), ('stg_queries', 'answered_date'), ('stg_queries', 'closed_date'),
    ('stg_crf_pages', 'visit_date'), ('stg_crf_pages', 'entry_date'),
] %}

all_dates as (
    {% for model, column in dated %}
    select tenant_id, study_id, max({{ column }}) as max_date
    from {{ ref(model) }}
    where {{ partition_filter() }}
    group by tenant_id, study_id
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

data_cut as (
    select tenant_id, study_id, max(max_date) as data_cut_date
    from all_dates
    group by tenant_id, study_id
)

select
    p.tenant_id as tenant_id,
    p.study_id as study_id,
    {{ surrogate_key(['p.tenant_id', 'p.study_id']) }} as study_key,
    c.data_cut_date as data_cut_date,
    {{ flag('p.n_dv = 1') }} as has_dv,
    {{ flag('p.n_queries = 1') }} as has_queries,
    {{ flag('p.n_sites = 1') }} as has_sites,
    {{ flag('p.n_crf_pages = 1') }} as has_crf_pages
from presence as p
left join data_cut as c
    on c.tenant_id = p.tenant_id and c.study_id = p.study_id
