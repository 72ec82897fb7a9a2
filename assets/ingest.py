"""Ingest assets: landing drop -> immutable raw zone -> validated bronze Parquet per domain."""

import dagster as dg

from orchestration.partitions import study_check, tenant_study_partitions
from orchestration.resources import LakeResource, LineageResource
from trialsynth.domains import DOMAINS
from trialsynth.ingest.drops import DropRegistry, drops_markdown
from trialsynth.ingest.landing import latest_drop, open_drop
from trialsynth.ingest.pipeline import ingest_raw_version, read_quarantine
from trialsynth.ingest.raw_zone import MANIFEST, RAW_POINTER, land_drop, read_version
from trialsynth.markdown import md_table
from trialsynth.names import split_partition_key
from trialsynth.version import code_version


class DropConfig(dg.Config):
    """Which drop to ingest; empty = the most recent complete drop of the partition."""

    drop_id: str = ""


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="ingest",
    kinds={"file"},
    description="The drop's bytes copied unchanged into the immutable raw zone (sha256 per file, versioned). "
    "Only regular files physically inside the drop are read: a drop with links, hard links, FIFOs, devices or "
    "sub-directories is refused as a whole. Metadata: every drop of the study and its state.",
)
def raw_drop(context: dg.AssetExecutionContext, config: DropConfig, lake: LakeResource, lineage: LineageResource) -> dg.MaterializeResult:
    pk = context.partition_key
    tenant, study = split_partition_key(pk)
    known = lake.known_tenants()
    if config.drop_id:
        drop = open_drop(lake.landing_dir, tenant, study, config.drop_id, known)
    else:
        drop = latest_drop(lake.landing_dir, tenant, study, known)
    # The drop's earlier versions' manifests are enough to tell whether these bytes are already there.
    with lake.working_copy(pk, drop.drop_id, fetch=f"{drop.drop_id}/*/{MANIFEST}", zone="raw") as raw_root:
        raw = land_drop(drop, raw_root)
    raw_uri = lake.uri(pk, f"{drop.drop_id}/v{raw.version}", zone="raw")
    context.log.info(f"raw zone {'new version' if raw.created else 'already holds these bytes'}: {raw_uri}")
    expected = context.run.tags.get("trialsynth/content_hash")
    if expected and expected != raw.content_hash:
        raise dg.Failure(f"drop {drop.drop_id} changed after the landing sensor read it (content {expected[:16]}, "
                         f"now {raw.content_hash[:16]}); its new bytes run as a new arrival of the drop")
    registry = DropRegistry(lake.lake_dir, tenant, study)
    registry.landed(drop, raw.content_hash, raw.version, context.run_id)
    metadata = {
        "drop_id": drop.drop_id,
        "raw_version": raw.version,
        "new_version": raw.created,
        "files": len(raw.files),
        "refused": dg.MetadataValue.json(raw.refused),
        "content_hash": raw.content_hash,
        "raw_path": dg.MetadataValue.path(raw_uri),
        "drops": dg.MetadataValue.md(drops_markdown(registry.records())),
    }
    if raw.refused:  # nothing of the drop goes further: bronze is skipped and keeps the previous drop
        raise dg.Failure(description=raw.refusal_message(), metadata=metadata)
    lake.point_raw(pk, drop.drop_id, raw.version)
    lineage.record(pk, asset_key="raw_drop", input_sha256s=raw.files,
                   output_sha256=raw.content_hash, code_version=code_version(),
                   parameters={"drop_id": drop.drop_id, "raw_version": raw.version})
    return dg.MaterializeResult(metadata=metadata)


DOMAINS_INDEX = ["bronze", "domains"]


def _bronze_specs() -> list[dg.AssetSpec]:
    return [
        *(dg.AssetSpec(["bronze", d], deps=[raw_drop], description=spec.description, group_name="ingest",
                       partitions_def=tenant_study_partitions, kinds={"parquet"})
          for d, spec in DOMAINS.items()),
        dg.AssetSpec(DOMAINS_INDEX, deps=[raw_drop], group_name="ingest", partitions_def=tenant_study_partitions,
                     kinds={"parquet"},
                     description="The file report of the study's current drop: which domains it really contained "
                     "(_domains.parquet, read by dbt) and where every file went (bronze domain, split dataset, "
                     "supplemental table, other SDTM domain and the rules that validated it, raw zone only)."),
    ]


def _placements_md(report) -> str:
    return md_table([{"file": f, "went to": p.split(" -> ", 1)[-1]} for f, p in sorted(report.placements.items())])


@dg.multi_asset(
    specs=_bronze_specs(),
    check_specs=[
        study_check("no_rows_quarantined", asset=["bronze", d],
                    description="Every row of the domain's file passed its expectation suite (Great Expectations' rules, run as polars checks).")
        for d in DOMAINS
    ],
    name="bronze",
)
def bronze(context: dg.AssetExecutionContext, lake: LakeResource, lineage: LineageResource):
    """Check and validate every file of the current raw version; write the study's bronze only when
    the whole drop can be taken (else the previous drop's bronze stays, whole, and the run fails)."""
    pk = context.partition_key
    tenant, study = split_partition_key(pk)
    pointer = lake.read_json(pk, RAW_POINTER)
    version = f"{pointer['drop_id']}/v{pointer['version']}"
    # The ingest core works on local files: a working copy of the raw version and of the study's bronze and
    # quarantine (the store's own folders on the local lake), published back when the block ends.
    with lake.working_copy(pk, version, zone="raw") as raw_root, \
            lake.working_copy(pk, "bronze", f"quarantine/{pointer['drop_id']}-v{pointer['version']}") as lake_root:
        raw = read_version(raw_root, tenant, study, pointer["drop_id"], pointer["version"])
        report = ingest_raw_version(raw, lake_root, log=context.log.info)
        uris = {name: (lake.local_uri(lake_root, o.bronze_path),
                       lake.local_uri(lake_root, o.quarantine_path) if o.quarantine_path else None)
                for name, o in report.domains.items()}
        reasons = {name: read_quarantine(o.reasons_path, tenant) for name, o in report.domains.items()
                   if o.quarantine_path and name in DOMAINS}
    for line in sorted(report.placements.values()):
        context.log.info(line)
    if report.failures:
        raise dg.Failure(
            description=f"drop {report.drop_id} (raw version {report.raw_version}) was not taken; the study's bronze "
            "still holds its previous drop, whole, and the raw bytes are kept in the raw zone:\n"
            + "\n".join(f"- {why}" for why in report.failures.values())
            + "\nevery file of the drop:\n" + "\n".join(f"  {line}" for line in sorted(report.placements.values())),
            metadata={"failures": dg.MetadataValue.json(report.failures), "raw_version": report.raw_version,
                      "files": dg.MetadataValue.md(_placements_md(report))},
        )

    for name, outcome in report.domains.items():
        bronze_uri, quarantine_uri = uris[name]
        lineage.record(pk, asset_key=f"bronze/{name}", input_sha256s=outcome.input_sha256s,
                       output_sha256=outcome.bronze_sha256, code_version=code_version(),
                       output_path=bronze_uri if outcome.bronze_sha256 else None,
                       parameters={"drop_id": report.drop_id, "raw_version": report.raw_version,
                                   "rows_passed": outcome.rows_passed, "rows_quarantined": outcome.rows_quarantined})
        if name not in DOMAINS:
            continue  # supp/ and other/ tables are listed in the file report below
        metadata = {
            "source_file": outcome.file or "(absent from this drop)",
            "rows_in": outcome.rows_in,
            "rows_passed": outcome.rows_passed,
            "rows_quarantined": outcome.rows_quarantined,
            "path": dg.MetadataValue.path(bronze_uri),
            "sha256": outcome.bronze_sha256,
        }
        if quarantine_uri:
            metadata["quarantine"] = dg.MetadataValue.path(quarantine_uri)
            metadata["quarantine_reasons"] = dg.MetadataValue.md(md_table(
                reasons[name].group_by("column", "rule").len("rows").sort("rows", descending=True).head(20).to_dicts()))
        yield dg.MaterializeResult(asset_key=["bronze", name], metadata=metadata)
        yield dg.AssetCheckResult(
            asset_key=["bronze", name], check_name="no_rows_quarantined", passed=outcome.rows_quarantined == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows_in": outcome.rows_in, "rows_passed": outcome.rows_passed,
                      "rows_quarantined": outcome.rows_quarantined},
        )
    extra = {n: o for n, o in report.domains.items() if n not in DOMAINS}
    yield dg.MaterializeResult(asset_key=DOMAINS_INDEX, metadata={
        "drop_id": report.drop_id,
        "files": dg.MetadataValue.md(_placements_md(report)),
        "placements": dg.MetadataValue.json(report.placements),
        "other_tables": dg.MetadataValue.md(md_table([
            {"table": f"bronze/{n}", "files": o.file, "rows_passed": o.rows_passed, "rows_quarantined": o.rows_quarantined}
            for n, o in sorted(extra.items())])),
        "rows_landed": report.rows_landed,
        "rows_quarantined": report.rows_quarantined,
    })
