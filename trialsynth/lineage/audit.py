"""One verification run as the CLI, the Dagster asset and its schedule do it, and the status table
a dashboard reads ("lineage verified at <time>").

Status: ``<lake>/<tenant>/<study>/audit/lineage_status.parquet``, one row per partition, prefixed
with tenant_id and study_id like every analytics table (a dbt ``analytics`` source with lake_path
``audit/lineage_status.parquet`` unions all partitions).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from trialsynth.ingest.bronze import write_parquet_atomic
from trialsynth.lineage.backends import S3Backend
from trialsynth.lineage.keys import trusted_keyring
from trialsynth.lineage.store import ChainStore
from trialsynth.lineage.verify import OutputChecker, VerificationReport, checkpoint_verified, verify_store
from trialsynth.settings import Settings

STATUS_PATH = "audit/lineage_status.parquet"


def write_status_tables(report: VerificationReport, lake_dir: Path) -> list[Path]:
    """Write one status row per verified partition; returns the files written."""
    written = []
    for p in report.partitions:
        first = p.first_failure
        row = pl.DataFrame({
            "tenant_id": [p.tenant], "study_id": [p.study],
            "verified_at": [report.verified_at], "status": ["verified" if p.ok else "broken"],
            "manifests": [p.manifests], "checkpoints": [p.checkpoints], "outputs_checked": [p.outputs_checked],
            "problems": [len(p.failures)], "warnings": [len(p.warnings)],
            "first_broken_link": [first.describe() if first else None], "store": [report.location],
        }, schema_overrides={"first_broken_link": pl.String})
        path = Path(lake_dir) / p.tenant / p.study / STATUS_PATH
        write_parquet_atomic(row, path)
        written.append(path)
    return written


def run_verification(settings: Settings, store: ChainStore, partitions: list[tuple[str, str]] | None = None,
                     checkpoint: bool = False, write_status: bool = True) -> VerificationReport:
    """Verify ``partitions`` (default all) with the settings' trusted keys; write the status table;
    with ``checkpoint``, sign a checkpoint for every partition that verified intact."""
    s3 = store.backend.client if isinstance(store.backend, S3Backend) else None
    report = verify_store(store, trusted_keyring(settings), OutputChecker(s3_client=s3), partitions)
    if write_status:
        write_status_tables(report, settings.lake_dir)
    if checkpoint:
        checkpoint_verified(store, report)
    return report
