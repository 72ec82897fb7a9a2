-- "Lineage verified at <time>" per tenant/study, for dashboards: the last verification's result.
select
    tenant_id,
    study_id,
    verified_at,
    verified_date,
    status,
    case
        when status = 'verified' then 'lineage verified at ' || verified_at
        else 'lineage BROKEN (verified at ' || verified_at || '): ' || coalesce(first_broken_link, 'see the report')
    end as headline,
    manifests,
    checkpoints,
    outputs_checked,
    problems,
    warnings,
    first_broken_link,
    store
from {{ ref('stg_lineage_status') }} as s
where {{ partition_filter() }}
