"""One verification run as the CLI, the Dagster asset and its schedule do it, and the status table
a dashboard reads ("lineage verified at <time>").

Status: ``<lake>/<tenant>/<study>/audit/lineage_status.parquet``, one row per partition, prefixed
with tenant_id and study_id like every analytics table; ``verified_at`` is ISO 8601 text in UTC (read
alike by DuckDB and ClickHouse). dbt reads it as source ``analytics.lineage_status``
(models/_lineage_status_sources.yml) into ``stg_lineage_status`` and ``mart_lineage_status``, the
dashboard's "lineage verified at <time>".
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from trialsynth.lineage.backends import S3Backend
from trialsynth.lineage.keys import trusted_keyring
from trialsynth.lineage.store import ChainStore
from trialsynth.lineage.verify import OutputChecker, VerificationReport, checkpoint_verified, verify_store
from trialsynth.settings import Settings
from trialsynth.storage import LakeStore, LocalLakeStore, open_lake_store

STATUS_PATH = "audit/lineage_status.parquet"


def write_status_tables(report: VerificationReport, lake: Path | LakeStore) -> list[str]:
    """Write one status row per verified partition into the lake (a folder, or the settings' store:
    :mod:`trialsynth.storage`); returns where each was written."""
    import polars as pl  # at verification time, not with the Dagster definitions

    store = lake if isinstance(lake, LakeStore) else LocalLakeStore(Path(lake))
    written = []
    for p in report.partitions:
        first = p.first_failure
        row = pl.DataFrame({
            "tenant_id": [p.tenant], "study_id": [p.study],
            "verified_at": [report.verified_at.astimezone(UTC).isoformat(timespec="seconds")],
            "status": ["verified" if p.ok else "broken"],
            "manifests": [p.manifests], "checkpoints": [p.checkpoints], "outputs_checked": [p.outputs_checked],
            "problems": [len(p.failures)], "warnings": [len(p.warnings)],
            "first_broken_link": [first.describe() if first else None], "store": [report.location],
        }, schema_overrides={"first_broken_link": pl.String})
        key = f"{p.tenant}/{p.study}/{STATUS_PATH}"
        store.write_parquet(key, row)
        written.append(store.uri(key))
    return written


def check_raw_zone_locks(report: VerificationReport, raw: LakeStore) -> None:
    """Fail each verified partition whose raw-zone objects (the sponsor's bytes, S3 deployment under Object
    Lock) were deleted, written over or lost their COMPLIANCE retention
    (:meth:`trialsynth.storage.S3LakeStore.lock_problems`); a raw zone without Object Lock has nothing to check."""
    if not getattr(raw, "locked", False):
        return
    for partition in report.partitions:
        for problem in raw.lock_problems(f"{partition.tenant}/{partition.study}/"):
            partition.fail(None, "raw_zone", problem)


def run_verification(settings: Settings, store: ChainStore, partitions: list[tuple[str, str]] | None = None,
                     checkpoint: bool = False, write_status: bool = True) -> VerificationReport:
    """Verify ``partitions`` (default all) with the settings' trusted keys; write the status table;
    with ``checkpoint``, sign a checkpoint for every partition that verified intact."""
    s3 = store.backend.client if isinstance(store.backend, S3Backend) else None
    report = verify_store(store, trusted_keyring(settings), OutputChecker(s3_client=s3, settings=settings), partitions)
    check_raw_zone_locks(report, open_lake_store(settings, "raw"))
    if write_status:
        write_status_tables(report, open_lake_store(settings))
    if checkpoint:
        checkpoint_verified(store, report)
    return report
