-- EDC queries, one row per query, with their life cycle measured against the study's data cut.
with queries as (
    select *
    from {{ ref('stg_queries') }}
    where {{ partition_filter() }}
),

studies as (
    select tenant_id, study_id, data_cut_date
    from {{ ref('dim_study') }}
    where {{ partition_filter() }}
),

aged as (
    select
        q.tenant_id as tenant_id,
        q.study_id as study_id,
        q.query_id as query_id,
        q.site_id as site_id,
        q.usubjid as usubjid,
        q.crf_page as crf_page,
        q.visitnum as visitnum,
        q.field_name as field_name,
        q.query_type as query_type,
        upper(q.status) as query_status,
        q.opened_date as opened_date,
        q.answered_date as answered_date,
        q.closed_date as closed_date,
        st.data_cut_date as data_cut_date,
        case
            when q.closed_date is not null or upper(coalesce(q.status, '')) = 'CLOSED' then 0
            else 1
        end as n_open,
        date_diff('day', q.opened_date, q.answered_date) as days_to_answer,
        date_diff('day', q.opened_date, q.closed_date) as days_to_close,
        date_diff('day', q.opened_date, coalesce(q.closed_date, st.data_cut_date)) as age_days
    from queries as q
    left join studies as st
        on st.tenant_id = q.tenant_id and st.study_id = q.study_id
)

select
    tenant_id,
    study_id,
    query_id,
    {{ surrogate_key(['tenant_id', 'study_id', 'query_id']) }} as query_key,
    site_id,
    usubjid,
    crf_page,
    visitnum,
    field_name,
    query_type,
    query_status as status,
    opened_date,
    answered_date,
    closed_date,
    data_cut_date,
    {{ flag('n_open = 1') }} as is_open,
    days_to_answer,
    days_to_close,
    age_days,
    {{ flag('n_open = 1 and age_days > ' ~ var('query_open_alarm_days')) }} as is_open_over_30_days
from aged
