"""The landing sensor: complete drops become runs of their partition, one drop of a study at a time.

Each evaluation (:func:`plan_landing`, which ``trialsynth ingest`` and ``trialsynth drops`` use too):

1. scans the landing zone; folders not taken (links, hidden, unsafe or clashing tenant names,
   incomplete drops) are logged with the reason;
2. records every complete drop in its study's drop registry (:mod:`trialsynth.ingest.drops`; the
   content hash is read again only when the drop's files changed) and settles the drops whose run
   finished, from that run's steps in the Dagster instance;
3. requests the next drop of each study in arrival order, none while a run of the study is in flight.

The run key is the drop's content hash (suffixed with the attempt after ``trialsynth drops retry``),
so a redelivered drop is not ingested twice and the daemon never repeats a run the runner made. Runs
carry the tags ``trialsynth/tenant``, ``trialsynth/study``, ``trialsynth/drop_id``,
``trialsynth/content_hash``, ``trialsynth/drop_arrival`` and ``trialsynth/drop_attempt``. When nothing is
requested, the skip reason on the sensor's page states each study's drops.

The approval sensor (:func:`approval_sensor`) is the daemon's half of the approval flow: a study whose
cohort waits for approval of its draft model gets one ``approved_generation`` run of its partition
once the registry records that model approved.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

import dagster as dg

from orchestration.jobs import approved_generation_job, study_pipeline_job
from orchestration.partitions import TENANT_STUDY
from orchestration.resources import LakeResource, RegistryResource
from trialsynth.ingest.drops import (
    DropRecord,
    DropRegistry,
    RunInfo,
    StudyPlan,
    drops_markdown,
    plan_study,
    study_registries,
)
from trialsynth.ingest.landing import Drop, scan_ready_drops
from trialsynth.names import partition_key, split_partition_key

RUN_KEY_TAG = "dagster/run_key"


def drop_run_request(record: DropRecord) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=record.run_key,
        partition_key=record.partition_key,
        run_config={"ops": {"raw_drop": {"config": {"drop_id": record.drop_id}}}},
        tags={"trialsynth/tenant": record.tenant, "trialsynth/study": record.study,
              "trialsynth/drop_id": record.drop_id, "trialsynth/content_hash": record.content_hash,
              "trialsynth/drop_arrival": str(record.arrival), "trialsynth/drop_attempt": str(record.attempt)},
    )


def step_failure_message(event: dg.DagsterEvent) -> str:
    """The user-facing cause of a step failure (not Dagster's wrapper), whole."""
    error = event.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    message = error.message.strip()
    return message.partition(": ")[2] if error.cls_name == "Failure" else message  # dg.Failure: its description


@lru_cache(maxsize=1)
def ingest_steps() -> tuple[str, str]:
    """Step keys of the raw zone asset and of the op that writes bronze: a drop is ingested when
    both succeeded in its run."""
    import assets.ingest as ingest_assets

    bronze_dm = dg.AssetKey(["bronze", "dm"])
    bronze = next(a.op.name for a in vars(ingest_assets).values()
                  if isinstance(a, dg.AssetsDefinition) and bronze_dm in a.keys)
    return ingest_assets.raw_drop.op.name, bronze


def drop_run_info(instance: dg.DagsterInstance, record: DropRecord) -> RunInfo | None:
    """The Dagster run of a drop (by the run id the raw zone asset recorded, else by run key)."""
    if record.run_id:
        run = instance.get_run_by_id(record.run_id)
    else:
        run = next(iter(instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: record.run_key}), limit=1)), None)
    if run is None:
        return None
    if not run.is_finished:
        return RunInfo(run.run_id, finished=False)
    steps = ingest_steps()
    logs = instance.all_logs(run.run_id, of_type={dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE})
    succeeded = {e.step_key for e in logs if e.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS}
    run_record = instance.get_run_record_by_id(run.run_id)
    ended = run_record.end_time if run_record else None
    if set(steps) <= succeeded:
        return RunInfo(run.run_id, finished=True, ingested=True, ended_at=ended)
    failures = [f"step {e.step_key} failed: {step_failure_message(e.dagster_event)}" for e in logs
                if e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE and e.step_key in steps]
    reason = "; ".join(failures) or f"run {run.status.value} before the drop reached bronze"
    return RunInfo(run.run_id, finished=True, ingested=False, reason=reason, ended_at=ended)


@dataclass
class LandingPlan:
    studies: dict[str, StudyPlan]  # partition key -> the study's drops and the drop to run next
    skipped: list[str]  # folders and drops not taken, with the reason
    new_partitions: list[str]  # tenant/study keys to register

    @property
    def changes(self) -> list[str]:
        return [c for p in self.studies.values() for c in p.changes]

    def describe(self) -> str:
        return "; ".join(p.describe() for p in self.studies.values()) or "no complete drops in the landing zone"


def plan_landing(lake: LakeResource, instance: dg.DagsterInstance) -> LandingPlan:
    """Evaluate the landing zone against the drop registries and the Dagster runs (see module doc)."""
    drops, skipped = scan_ready_drops(lake.landing_dir, lake.known_tenants())
    registries = {partition_key(r.tenant, r.study): r for r in study_registries(lake.lake_dir)}
    ready: dict[str, list[tuple[Drop, str]]] = defaultdict(list)
    for drop in drops:
        registry = registries.setdefault(drop.partition_key, DropRegistry(lake.lake_dir, drop.tenant, drop.study))
        try:
            ready[drop.partition_key].append((drop, registry.content_hash(drop)))
        except (OSError, ValueError) as exc:  # a folder became a link, a file changed while it was read ...
            skipped.append(f"drop {drop.path}: skipped for now: {exc}")
    studies = {key: plan_study(registry, ready.get(key, []), lambda record: drop_run_info(instance, record))
               for key, registry in sorted(registries.items())}
    for plan in studies.values():
        _point_at_current(lake, plan)
    new = sorted(set(ready) - set(instance.get_dynamic_partitions(TENANT_STUDY)))
    return LandingPlan(studies, skipped, new)


def drop_observations(plan: LandingPlan, registered: set[str]) -> list[dg.AssetObservation]:
    """One observation of ``raw_drop`` per registered study whose drop states changed in this
    evaluation: the states and why, on the asset's page in the UI."""
    return [dg.AssetObservation("raw_drop", partition=key, description="; ".join(p.changes),
                                metadata={"drops": dg.MetadataValue.md(drops_markdown(p.records)),
                                          "current_drop": p.current.drop_id if p.current else "-"})
            for key, p in plan.studies.items() if p.changes and key in registered]


def _point_at_current(lake: LakeResource, plan: StudyPlan) -> None:
    """Between runs, ``raw_pointer.json`` names the drop the study's bronze holds (a failed run left it
    on its own drop), so re-materializing bronze by hand re-reads the current drop, never a failed one."""
    current = plan.current
    if current is None or current.raw_version is None or plan.in_flight is not None:
        return
    if lake.point_raw(current.partition_key, current.drop_id, current.raw_version):
        plan.changes.append(f"{current.partition_key}: raw pointer back on drop {current.drop_id} v{current.raw_version}, "
                            "the drop the study's bronze holds")


@dg.sensor(job=study_pipeline_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def landing_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
    """Registers new tenant/study partitions and requests the next complete drop of each study."""
    plan = plan_landing(lake, context.instance)
    for message in plan.skipped:
        context.log.warning(f"landing zone: {message}")
    for message in plan.changes:
        context.log.info(message)
    requests = [drop_run_request(p.next) for p in plan.studies.values() if p.next is not None]
    registered = set(context.instance.get_dynamic_partitions(TENANT_STUDY))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(TENANT_STUDY, plan.new_partitions)]
        if plan.new_partitions else [],
        asset_events=drop_observations(plan, registered),
        skip_reason=None if requests else plan.describe(),
    )


APPROVED_MODEL_TAG = "trialsynth/approved_model"


def approval_run_request(partition: str, model_id: str) -> dg.RunRequest:
    """The generation run of ``partition`` from the approved model ``model_id`` (pinned by run config,
    so a model trained since cannot take its place); one run per (study, model): the run key."""
    tenant, study = split_partition_key(partition)
    config = {"config": {"model_id": model_id}}
    return dg.RunRequest(
        run_key=f"approved:{partition}:{model_id}", partition_key=partition,
        run_config={"ops": {"synthetic_cohort": config, "evidence_pack": config}},
        tags={"trialsynth/tenant": tenant, "trialsynth/study": study, APPROVED_MODEL_TAG: model_id},
    )


@dg.sensor(job=approved_generation_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def approval_sensor(context: dg.SensorEvaluationContext, lake: LakeResource,
                    registry: RegistryResource) -> dg.SensorResult:
    """Generates the cohort of each study that waits for approval of its model (the ``synthetic_cohort``
    asset left ``synthesis/waiting.json``) once the registry records that model approved: one run of
    that study's partition only. The skip reason names each model still waiting and its status. A
    generation run that fails keeps the study waiting but is not repeated (same run key): rerun it
    from the UI or ``trialsynth run``."""
    from assets.synthesis import waiting_for_approval, waiting_message

    waiting = waiting_for_approval(lake, registry.get())
    requests, still = [], []
    for partition, (model_id, status) in sorted(waiting.items()):
        if status == "approved":
            context.log.info(f"{partition}: model {model_id} was approved: generating its synthetic cohort")
            requests.append(approval_run_request(partition, model_id))
        elif status == "draft":
            still.append(f"{partition}: {waiting_message(model_id)}")
        else:
            still.append(f"{partition}: waits for model {model_id}, which is {status}: it will not generate; "
                         "train and approve another model")
    if requests:
        return dg.SensorResult(run_requests=requests)
    return dg.SensorResult(skip_reason="; ".join(still) or "no study waits for a model approval")
