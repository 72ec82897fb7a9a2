"""Runs cannot race: the run queue trialsynth writes into dagster.yaml (trialsynth/dagster_home.py).

Runs are submitted to the instance's QueuedRunCoordinator (``instance.submit_run``, what the sensor
daemon, a backfill and the API's launchRun do) and taken off the queue by Dagster's own daemon logic
(``QueuedRunCoordinatorDaemon.run_iteration``), with the limits from the dagster.yaml the settings
produce. Only the launcher is a stand-in: Dagster's ``MockedRunLauncher`` records a launched run the
way a run worker (a subprocess, a Kubernetes Job) would receive it, and the test plays the worker,
executing the runs one by one (``execute_run``), so "in progress" lasts exactly as long as the test says.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import dagster as dg
import pytest
import yaml
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._utils.hosted_user_process import recon_job_from_origin

from orchestration.resources import LakeResource
from orchestration.sensors import RUN_KEY_TAG, drop_run_request, plan_landing
from tests.conftest import make_drop
from trialsynth.dagster_home import dagster_yaml
from trialsynth.settings import Settings, get_settings

TENANT_TAG = "trialsynth/tenant"


@dg.op
def _work() -> None:
    """What the run does does not matter to the queue: only its tags do."""


@dg.job(executor_def=dg.in_process_executor)
def queued_drop_run() -> None:
    _work()


queue_test_defs = dg.Definitions(jobs=[queued_drop_run])


@dataclass
class RunQueue:
    """An instance configured by trialsynth's dagster.yaml, a workspace holding ``queued_drop_run``, and
    Dagster's dequeue daemon."""

    instance: dg.DagsterInstance
    context: WorkspaceProcessContext
    daemon: QueuedRunCoordinatorDaemon

    def submit(self, tags: dict[str, str]) -> str:
        workspace = self.context.create_request_context()
        remote = workspace.get_code_location("queue_test").get_repository("__repository__").get_full_job(
            queued_drop_run.name)
        run = self.instance.create_run_for_job(queued_drop_run, tags=tags, remote_job_origin=remote.get_remote_origin(),
                                               job_code_origin=remote.get_python_origin())
        return self.instance.submit_run(run.run_id, workspace).run_id

    def dequeue(self) -> set[str]:
        """One daemon iteration; the ids of the runs it launched."""
        before = {r.run_id for r in self.in_progress()}
        list(self.daemon.run_iteration(self.context))
        return {r.run_id for r in self.in_progress()} - before

    def in_progress(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES))))

    def queued(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED])))

    def finish(self, run_id: str) -> None:
        """Play the run worker: execute the launched run to its end."""
        run = self.instance.get_run_by_id(run_id)
        execute_run(recon_job_from_origin(run.job_code_origin), run, self.instance)
        assert self.instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS


@pytest.fixture
def open_queue(settings: Settings, tmp_path) -> Iterator[Callable[[], RunQueue]]:
    """Opens a RunQueue whose dagster.yaml is trialsynth's, from the settings as they are then, with
    the recording launcher in place of the default one."""
    stack = ExitStack()

    def open_() -> RunQueue:
        home = tmp_path / "queue_home"
        home.mkdir()
        config = {**dagster_yaml(get_settings()),
                  "run_launcher": {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}}
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name=__name__, attribute="queue_test_defs"),
                                             location_name="queue_test")
        context = stack.enter_context(WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)))
        return RunQueue(instance, context, QueuedRunCoordinatorDaemon(interval_seconds=1))

    with stack:
        yield open_


def _check_limits(runs: list[dg.DagsterRun], cap: int) -> None:
    per_partition = Counter(r.tags[PARTITION_NAME_TAG] for r in runs)
    per_tenant = Counter(r.tags.get(TENANT_TAG) for r in runs)
    assert max(per_partition.values(), default=0) <= 1, f"two runs of one study at once: {per_partition}"
    assert max(per_tenant.values(), default=0) <= cap, f"tenant over its cap of {cap}: {per_tenant}"


def test_two_drops_of_one_study_landed_together_run_one_at_a_time(open_queue, settings: Settings) -> None:
    run_queue = open_queue()
    for drop_id, body in (("2026-11-30", b"STUDYID,USUBJID\nACME-001,1\n"), ("2026-12-01", b"STUDYID,USUBJID\nACME-001,2\n")):
        make_drop(settings.landing_dir, "acme", "ACME-001", drop_id, {"dm.csv": body})
    make_drop(settings.landing_dir, "acme", "ACME-002", "2026-12-01", {"dm.csv": b"STUDYID,USUBJID\nACME-002,1\n"})
    plan = plan_landing(LakeResource(), run_queue.instance)
    first, second = plan.studies["acme|ACME-001"].records
    assert plan.studies["acme|ACME-001"].next == first  # the sensor itself requests one drop of a study at a time

    # Both drops' runs submitted at once anyway (a retry, an API call or a second daemon racing the sensor):
    # the queue holds the second back while the first is in progress; another study is not held back.
    ids = {}
    for record in (first, second, plan.studies["acme|ACME-002"].records[0]):
        request = drop_run_request(record)
        ids[(record.study, record.drop_id)] = run_queue.submit(
            {**request.tags, PARTITION_NAME_TAG: request.partition_key, RUN_KEY_TAG: request.run_key})
    run_1, run_2, other = ids.values()

    assert run_queue.dequeue() == {run_1, other}
    for _ in range(3):  # however often the daemon looks, the second drop waits for the first
        assert run_queue.dequeue() == set()
        assert [r.run_id for r in run_queue.queued()] == [run_2]
    run_queue.finish(run_1)
    assert run_queue.dequeue() == {run_2}
    assert {r.run_id for r in run_queue.in_progress()} == {run_2, other}  # the two studies run side by side
    _check_limits(run_queue.in_progress(), get_settings().runs_per_tenant)
    run_queue.finish(other)
    run_queue.finish(run_2)

    records = {r.dagster_run.run_id: r for r in run_queue.instance.get_run_records()}
    assert records[run_1].end_time <= records[run_2].start_time, "the study's runs overlapped"
    assert {r.dagster_run.status for r in records.values()} == {dg.DagsterRunStatus.SUCCESS}


@pytest.mark.parametrize("cap", [None, 2], ids=["default-cap", "runs_per_tenant=2"])
def test_a_backfill_of_one_tenant_cannot_starve_another(open_queue, monkeypatch, cap: int | None) -> None:
    if cap is not None:
        monkeypatch.setenv("TRIALSYNTH_RUNS_PER_TENANT", str(cap))
        get_settings.cache_clear()
    cap = get_settings().runs_per_tenant
    queue = open_queue()

    # 12 studies of one tenant queued first: more than Dagster's 10 concurrent runs, so without a per-tenant
    # cap the backfill would take every slot and the other tenant's drop would wait for all of it.
    backfill = {queue.submit({TENANT_TAG: "acme", PARTITION_NAME_TAG: f"acme|B{i:02d}", "dagster/backfill": "bf1"})
                for i in range(12)}
    beta = queue.submit({TENANT_TAG: "beta", PARTITION_NAME_TAG: "beta|BETA-001"})

    launched = queue.dequeue()
    assert beta in launched, "the other tenant's run waited behind the backfill"
    assert len(launched & backfill) == cap
    _check_limits(queue.in_progress(), cap)
    queue.finish(min(launched & backfill))  # one of the backfill's runs ends: exactly one more of them starts
    assert len(queue.dequeue() & backfill) == 1
    _check_limits(queue.in_progress(), cap)


def test_schedule_and_backfill_runs_count_against_their_tenant(open_queue) -> None:
    """Runs that carry only Dagster's partition tag (a schedule tick, a backfill, a launch from the UI) get
    the tenant tag when submitted, so a backfill of one tenant is capped like the sensor's runs."""
    queue = open_queue()
    cap = get_settings().runs_per_tenant
    backfill = {queue.submit({PARTITION_NAME_TAG: f"acme|B{i:02d}", "dagster/backfill": "bf2"}) for i in range(cap + 3)}
    beta = queue.submit({PARTITION_NAME_TAG: "beta|BETA-001"})
    tagged = {r.run_id: r.tags for r in queue.queued()}
    assert tagged[beta][TENANT_TAG] == "beta" and tagged[beta]["trialsynth/study"] == "BETA-001"
    assert {tagged[run_id][TENANT_TAG] for run_id in backfill} == {"acme"}

    launched = queue.dequeue()
    assert beta in launched
    assert len(launched & backfill) == cap, "the untagged backfill took more than its tenant's cap"
    _check_limits(queue.in_progress(), cap)


def test_a_run_without_a_tenant_partition_is_left_untagged(open_queue) -> None:
    queue = open_queue()
    plain = queue.submit({})
    assert TENANT_TAG not in queue.instance.get_run_by_id(plain).tags
    assert plain in queue.dequeue()
