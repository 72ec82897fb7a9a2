"""Independent verification of every lineage chain, as a Dagster asset with an asset check, run
nightly by its schedule (declared here, wired in orchestration/definitions.py).

The asset runs the same checks as ``trialsynth verify-lineage`` (:func:`trialsynth.lineage.run_verification`),
writes the status table (``<lake>/<tenant>/<study>/audit/lineage_status.parquet``, which dbt turns into
``mart_lineage_status``: "lineage verified at <time>"), signs a checkpoint for every partition that
verified intact, and reports through its check ``lineage_chain_intact``, which fails with the same text
as the command, naming the first broken link.
"""

import dagster as dg

from orchestration.resources import LineageResource
from trialsynth.lineage import run_verification
from trialsynth.settings import get_settings

CHECK = "lineage_chain_intact"


@dg.asset(
    group_name="lineage",
    kinds={"file"},
    pool="duckdb_warehouse",  # re-hashes mart partitions in the warehouse: not while dbt writes it
    check_specs=[dg.AssetCheckSpec(CHECK, asset="lineage_verification",
                                   description="Every chain's links, hashes, signatures, checkpoints, retention "
                                               "and recorded output hashes hold")],
    description="Verifies every tenant/study lineage chain (links, hashes, Ed25519 signatures with trusted keys, "
    "signed Merkle checkpoints, Object Lock retention on S3, recorded output hashes against the lake and "
    "warehouse now), writes the lineage status table and checkpoints the intact chains.",
)
def lineage_verification(context: dg.AssetExecutionContext, lineage: LineageResource) -> dg.MaterializeResult:
    store = lineage.get_store()
    report = run_verification(get_settings(), store, checkpoint=True)
    text = report.describe()
    (context.log.info if report.ok else context.log.error)(text)
    first = report.first_failure
    return dg.MaterializeResult(
        metadata={
            "verified_at": report.verified_at.isoformat(timespec="seconds"),
            "store": report.location,
            "partitions": len(report.partitions),
            "manifests": sum(p.manifests for p in report.partitions),
            "broken_partitions": sum(not p.ok for p in report.partitions),
            "report": dg.MetadataValue.md(f"```\n{text}\n```"),
        },
        check_results=[dg.AssetCheckResult(
            check_name=CHECK, passed=report.ok, severity=dg.AssetCheckSeverity.ERROR, description=text,
            metadata={"first_broken_link": first.describe() if first else "none"})],
    )


lineage_verification_job = dg.define_asset_job(
    "verify_lineage", selection=dg.AssetSelection.assets(lineage_verification),  # not the asset's (op's) own name:
    # Dagster refuses a repository where a job and an op share one name (the code location would not load)
    description="Verify every lineage chain, update the status table, checkpoint the intact chains.")

# On by default, like the marts refresh (orchestration/schedules.py): an audit check that someone must
# remember to switch on is one that does not run. It reads every chain and re-hashes the latest output
# of each asset (seconds to about a minute for 10,000 manifests: benchmarks/results/lineage.md).
nightly_lineage_verification = dg.ScheduleDefinition(
    name="nightly_lineage_verification", job=lineage_verification_job, cron_schedule="30 3 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="After the 02:00 marts refresh: verify all lineage chains, update the lineage status table.")
