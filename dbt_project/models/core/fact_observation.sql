-- Vital signs and laboratory results in one long table: one row per VS or LB record.
with subjects as (
    select tenant_id, study_id, usubjid, site_id
    from {{ ref('stg_dm') }}
    where {{ partition_filter() }}
),

observations as (
    select
        tenant_id, study_id, usubjid, 'VS' as domain, seq, test_code, test_name,
        'VITAL SIGNS' as category, position, time_point, visitnum, visit, obs_dtc, obs_date,
        study_day, result_num, result_char, result_unit, status, reason_not_done,
        {{ cast_as('null', 'double') }} as normal_range_low,
        {{ cast_as('null', 'double') }} as normal_range_high,
        {{ cast_as('null', 'varchar') }} as normal_range_indicator
    from {{ ref('stg_vs') }}
    where {{ partition_filter() }}
    union all
    select
        tenant_id, study_id, usubjid, 'LB', seq, test_code, test_name,
        category, {{ cast_as('null', 'varchar') }}, {{ cast_as('null', 'varchar') }}, visitnum, visit, obs_dtc, obs_date,
        study_day, result_num, result_char, result_unit, status, reason_not_done,
        normal_range_low, normal_range_high, normal_range_indicator
    from {{ ref('stg_lb') }}
    where {{ partition_filter() }}
)

select
    o.tenant_id as tenant_id,
    o.study_id as study_id,
    o.usubjid as usubjid,
    s.site_id as site_id,
    o.domain as domain,
    o.seq as seq,
    {{ surrogate_key(['o.tenant_id', 'o.study_id', 'o.domain', 'o.usubjid', 'o.seq']) }} as observation_key,
    o.test_code as test_code,
    o.test_name as test_name,
    o.category as category,
    o.position as position,
    o.time_point as time_point,
    o.visitnum as visitnum,
    o.visit as visit,
    o.obs_dtc as obs_dtc,
    o.obs_date as obs_date,
    o.study_day as study_day,
    o.result_num as value_num,
    o.result_char as value_char,
    o.result_unit as unit,
    o.status as status,
    o.reason_not_done as reason_not_done,
    {{ flag("upper(coalesce(o.status, '')) = 'NOT DONE' or (o.result_num is null and o.result_char is null)") }} as is_missing,
    o.normal_range_low as normal_range_low,
    o.normal_range_high as normal_range_high,
    o.normal_range_indicator as normal_range_indicator
from observations as o
left join subjects as s
    on s.tenant_id = o.tenant_id and s.study_id = o.study_id and s.usubjid = o.usubjid
