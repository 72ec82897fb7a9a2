"""Evaluate the landing sensor once and execute its run requests in the persistent Dagster instance.

This is what ``trialsynth demo`` and ``trialsynth ingest`` do without a running daemon: the same
sensor code decides what to run, runs carry the sensor's run key (so the daemon of ``make ui`` will
not repeat them), and a drop already ingested successfully is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from trialsynth.dagster_home import ensure_dagster_home

RUN_KEY_TAG = "dagster/run_key"
SENSOR_TAG = "dagster/sensor_name"


@dataclass
class RunOutcome:
    partition_key: str
    status: str  # SUCCESS, FAILURE or SKIPPED (already ingested)
    run_id: str | None
    summary: list[str] = field(default_factory=list)


def _summarize(events: list[dg.DagsterEvent]) -> list[str]:
    landed = quarantined = marts = assets = 0
    for ev in events:
        mat = ev.step_materialization_data.materialization
        assets += 1
        key = mat.asset_key.path
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        if key[0] == "bronze":
            landed += int(meta.get("rows_passed", 0))
            quarantined += int(meta.get("rows_quarantined", 0))
        elif key[-1].startswith(("mart_", "dim_", "fact_")):
            marts += 1
    return [f"rows landed {landed:,}, rows quarantined {quarantined:,}, "
            f"star/mart models built {marts}, assets materialized {assets}"]


def process_landing_zone(log: Callable[[str], None] = print, sensor_name: str = "landing_sensor") -> list[RunOutcome]:
    ensure_dagster_home()
    from orchestration.definitions import defs

    instance = dg.DagsterInstance.get()
    sensor = defs.resolve_sensor_def(sensor_name)
    context = dg.build_sensor_context(instance=instance, definitions=defs, sensor_name=sensor_name,
                                      resources=dict(defs.resources or {}))
    result = sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        log(f"  registered partitions {list(request.partition_keys)}")
    job = defs.resolve_job_def(sensor.job_name)
    outcomes = []
    for request in result.run_requests or []:
        done = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key},
                                                       statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1)
        if done:
            log(f"  {request.partition_key}: drop already ingested by run {done[0].run_id} (run key {request.run_key[:40]}...)")
            previous = [e.dagster_event for e in instance.all_logs(done[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)]
            outcomes.append(RunOutcome(request.partition_key, "SKIPPED", done[0].run_id,
                                       ["no new data: nothing to do; that run made:", *_summarize(previous)]))
            continue
        log(f"  {request.partition_key}: running {job.name} for drop {request.tags.get('trialsynth/drop_id')}")
        res = job.execute_in_process(
            run_config={**request.run_config, "loggers": {"console": {"config": {"log_level": "INFO"}}}}, instance=instance, partition_key=request.partition_key,
            tags={**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_TAG: sensor_name}, raise_on_error=False,
        )
        status = "SUCCESS" if res.success else "FAILURE"
        summary = _summarize(res.get_asset_materialization_events())
        for ev in res.get_step_failure_events():
            error = ev.step_failure_data.error
            while error.cause is not None:  # the user-facing cause, not Dagster's wrapper
                error = error.cause
            summary.append(f"step {ev.step_key} failed: {error.message.strip()[:500]}")
        outcomes.append(RunOutcome(request.partition_key, status, res.run_id, summary))
    return outcomes
