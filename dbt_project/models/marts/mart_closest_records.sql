-- Closest real records of each synthetic row per evidence run (asset evidence_pack,
-- models/evidence/closest.py): Euclidean distance in the evidence pack's encoding space (numeric
-- columns standardised, categories one-hot), rank 1 the closest; flagged where the closest is nearer
-- than the 5th percentile of the holdout rows' distances to the training data (a possible copy).
-- Empty until an evidence pack has run.
select
    tenant_id,
    study_id,
    run_id,
    synthetic_row,
    rank,
    real_row,
    distance,
    holdout_p5,
    nearer_than_holdout_p5,
    case when nearer_than_holdout_p5 then 'FAIL' else 'PASS' end as privacy_status
from {{ lake_table('analytics', 'evidence_metrics', extra_file='closest_records') }} as c
where {{ partition_filter() }}
