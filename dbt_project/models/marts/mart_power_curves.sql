-- Power curves per design scenario with the recommended size (asset power_curves). The recommended
-- N is on the n_per_arm axis's scale: subjects enrolled in the control arm.
with curves as (
    select tenant_id, study_id, scenario, endpoint, axis, x, power, method, mc_se
    from {{ lake_table('analytics', 'power_curves') }} as c
    where {{ partition_filter() }}
),

recommendations as (
    select
        tenant_id, study_id, scenario, endpoint, effect, alpha, target_power, ratio, dropout,
        n_per_arm_control, n_per_arm_treatment, enrol_control, enrol_treatment, total_enrol, events
    from {{ lake_table('analytics', 'power_curves', extra_file='recommendations') }} as r
    where {{ partition_filter() }}
)

select
    c.tenant_id as tenant_id,
    c.study_id as study_id,
    c.scenario as scenario,
    c.endpoint as endpoint,
    c.axis as axis,
    c.x as x,
    c.power as power,
    c.method as method,
    c.mc_se as mc_se,
    r.enrol_control as recommended_n_per_arm,
    r.enrol_treatment as recommended_n_treatment,
    r.total_enrol as recommended_total_enrol,
    r.n_per_arm_control as evaluable_n_control,
    r.n_per_arm_treatment as evaluable_n_treatment,
    r.events as required_events,
    r.effect as design_effect,
    r.alpha as alpha,
    r.target_power as target_power,
    r.ratio as allocation_ratio,
    r.dropout as dropout
from curves as c
left join recommendations as r
    on r.tenant_id = c.tenant_id and r.study_id = c.study_id
    and r.scenario = c.scenario and r.endpoint = c.endpoint
