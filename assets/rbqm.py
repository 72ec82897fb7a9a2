"""RBQM assets: a study's quality tolerance limits and its Kaplan-Meier retention curve, written to
the lake for the dbt marts (sources ``analytics.qtl_limits`` and ``analytics.km_discontinuation``)."""

import dagster as dg

from orchestration.partitions import tenant_study_partitions
from orchestration.resources import LakeResource, LineageResource
from trialsynth.hashing import sha256_file
from trialsynth.markdown import md_table
from trialsynth.version import code_version

KM_DOMAINS = ("dm", "ds", "sv")


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="rbqm",
    kinds={"python", "parquet"},
    description="Study-level quality tolerance limits from the qtl section of data/studies/<study>.yaml "
    "(0 rows when the study configures none), for mart_kri_qtl.",
)
def qtl_limits(context: dg.AssetExecutionContext, lake: LakeResource, lineage: LineageResource) -> dg.MaterializeResult:
    from models.rbqm import qtl_table  # scipy (via models.rbqm): at run time, not at definitions load

    config, config_file = lake.study_config(context.partition_key)
    table = qtl_table(config.qtl, config_file=config_file.name if config_file else None)
    path, sha = lake.write_table(context.partition_key, "rbqm/qtl_limits.parquet", table)
    lineage.record(context.partition_key, asset_key="qtl_limits",
                   input_sha256s={config_file.name: sha256_file(config_file)} if config_file else {},
                   output_sha256=sha, output_path=path, code_version=code_version(),
                   parameters={"config_file": str(config_file) if config_file else None, "n_limits": table.height})
    return dg.MaterializeResult(metadata={
        "n_limits": table.height,
        "limits": dg.MetadataValue.md(md_table(table.to_dicts())),
        "path": dg.MetadataValue.path(str(path)),
    })


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="rbqm",
    kinds={"python", "parquet"},
    deps=[dg.AssetKey(["bronze", d]) for d in KM_DOMAINS],
    description="Kaplan-Meier time to study discontinuation by planned arm from bronze DM, DS and SV "
    "(models/rbqm/km.py), for mart_km_discontinuation.",
)
def km_discontinuation(context: dg.AssetExecutionContext, lake: LakeResource,
                       lineage: LineageResource) -> dg.MaterializeResult:
    from models.rbqm import discontinuation_times, km_by_group

    key = context.partition_key
    subjects = discontinuation_times(*(lake.read_bronze(key, d) for d in KM_DOMAINS))
    unusable = int(subjects["time_days"].isna().sum())
    if unusable:
        context.log.warning(f"{unusable} randomized subject(s) left out of the Kaplan-Meier curve: "
                            "time origin or end date unknown, or the end precedes the origin")
    curve = km_by_group(subjects, group="arm")
    path, sha = lake.write_table(key, "rbqm/km_discontinuation.parquet", curve)
    lineage.record(key, asset_key="km_discontinuation",
                   input_sha256s={f"bronze/{d}": lake.sha256(key, f"bronze/{d}.parquet") for d in KM_DOMAINS},
                   output_sha256=sha, output_path=path, code_version=code_version(),
                   parameters={"confidence_level": 0.95, "ci_method": "log-log", "group": "arm"})
    by_arm = subjects.dropna(subset=["time_days"]).groupby("arm")["event"].agg(["size", "sum"]).reset_index()
    return dg.MaterializeResult(metadata={
        "n_subjects": len(subjects) - unusable,
        "n_left_out": unusable,
        "by_arm": dg.MetadataValue.md(md_table(
            by_arm.rename(columns={"size": "subjects", "sum": "discontinued"}).to_dict("records"))),
        "path": dg.MetadataValue.path(str(path)),
    })
