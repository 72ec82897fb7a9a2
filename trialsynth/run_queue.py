"""The run queue's coordinator: Dagster's QueuedRunCoordinator, plus the tenant and study tags on every run.

The per-tenant cap of the run queue (``trialsynth/tenant`` in dagster.yaml's tag concurrency limits,
trialsynth/dagster_home.py) only holds back runs that carry the tag. Runs of the landing sensor and the
API set it themselves, but a schedule tick, a backfill or a launch from the UI only get Dagster's
``dagster/partition`` tag (``<tenant>|<study>``). Tagging them here, where every run is submitted, is the one
place that sees all of them; Dagster has no per-partition tags hook for dynamic partitions
(``tags_for_partition_fn`` exists only on static/time partitioned job configs).
"""

from __future__ import annotations

from collections.abc import Mapping

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import PARTITION_NAME_TAG

TENANT_TAG = "trialsynth/tenant"
STUDY_TAG = "trialsynth/study"


def partition_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tenant and study tags a run of partition ``<tenant>|<study>`` lacks ({} when it has no such
    partition, or already has both)."""
    tenant, sep, study = tags.get(PARTITION_NAME_TAG, "").partition("|")
    if not (sep and tenant and study):
        return {}
    wanted = {TENANT_TAG: tenant, STUDY_TAG: study}
    return {key: value for key, value in wanted.items() if key not in tags}


class TenantTaggingRunCoordinator(QueuedRunCoordinator):
    """QueuedRunCoordinator that adds ``trialsynth/tenant`` and ``trialsynth/study`` to a partitioned run
    before it is queued, so the per-tenant limit applies to schedule, backfill and UI runs too.

    A run already tagged with another tenant than its partition's is not re-tagged here; the run's own
    resources refuse it (RegistryResource binds the partition's tenant)."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        missing = partition_tags(run.tags)
        if missing:
            self._instance.add_run_tags(run.run_id, missing)
            context = SubmitRunContext(self._instance.get_run_by_id(run.run_id), context.workspace)
        return super().submit_run(context)
