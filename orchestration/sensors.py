"""The landing sensor: a complete drop (``_READY`` written) becomes a run of its partition.

The run key is the drop's content hash, so a redelivered drop (same bytes, even under a new drop id)
is not ingested twice; the cursor caches hashes by marker time so big drops are hashed once.
"""

from __future__ import annotations

import json

import dagster as dg

from orchestration.jobs import study_pipeline_job
from orchestration.partitions import TENANT_STUDY
from orchestration.resources import LakeResource
from trialsynth.ingest.landing import READY_MARKERS, Drop, scan_ready_drops


def drop_run_request(drop: Drop, content_hash: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"{drop.partition_key}:{content_hash}",
        partition_key=drop.partition_key,
        run_config={"ops": {"raw_drop": {"config": {"drop_id": drop.drop_id}}}},
        tags={"trialsynth/tenant": drop.tenant, "trialsynth/study": drop.study,
              "trialsynth/drop_id": drop.drop_id, "trialsynth/content_hash": content_hash},
    )


def _marker_stamp(drop: Drop) -> float:
    return max((drop.path / m).stat().st_mtime for m in READY_MARKERS if (drop.path / m).exists())


@dg.sensor(job=study_pipeline_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def landing_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
    """Registers new tenant/study partitions and requests one run per complete, new drop."""
    cursor: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    drops, skipped = scan_ready_drops(lake.landing_dir)
    for message in skipped:
        context.log.warning(f"landing zone: skipped {message}")
    known = set(context.instance.get_dynamic_partitions(TENANT_STUDY))
    new_keys = sorted({d.partition_key for d in drops} - known)
    requests = []
    for drop in drops:
        stamp = _marker_stamp(drop)
        cached = cursor.get(str(drop.path))
        content_hash = cached[1] if cached and cached[0] == stamp else drop.content_hash()
        cursor[str(drop.path)] = [stamp, content_hash]
        requests.append(drop_run_request(drop, content_hash))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(TENANT_STUDY, new_keys)] if new_keys else [],
        cursor=json.dumps(cursor, sort_keys=True),
        skip_reason=None if requests else "no complete drops in the landing zone",
    )
