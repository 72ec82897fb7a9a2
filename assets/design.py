"""Trial-design assets: a study's design scenarios -> power curves and recommended N per arm."""

import dagster as dg

from orchestration.partitions import tenant_study_partitions
from orchestration.resources import LakeResource, LineageResource
from trialsynth.hashing import sha256_file
from trialsynth.markdown import md_table
from trialsynth.names import split_partition_key
from trialsynth.version import code_version

PLOTS = "design/plots"


class DesignConfig(dg.Config):
    seed: int = 20261125
    n_trials: int = 0  # 0 = as the design file says


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="design",
    kinds={"python", "parquet"},
    description="Power curves (analytic + Monte Carlo) and, for every scenario in data/designs/<study>.yaml, the "
    "analysable N per arm and the N to enrol per arm (analysable / (1 - dropout)), labelled as `trialsynth power` "
    "prints them.",
)
def power_curves(context: dg.AssetExecutionContext, config: DesignConfig, lake: LakeResource,
                 lineage: LineageResource) -> dg.MaterializeResult:
    from models.design.scenarios import labelled_recommendations, run_design_file  # at run time, not at load

    _tenant, study = split_partition_key(context.partition_key)
    design_file = lake.designs_dir / f"{study}.yaml"
    if not design_file.exists():
        context.log.warning(f"no design scenarios for {study}: {design_file} does not exist")
        return dg.MaterializeResult(metadata={"scenarios": 0, "design_file": str(design_file)})
    result = run_design_file(design_file, seed=config.seed, n_trials=config.n_trials or None)
    curves_path, curves_sha = lake.write_table(context.partition_key, "design/power_curves.parquet", result.curves)
    rec_path, rec_sha = lake.write_table(context.partition_key, "design/recommendations.parquet", result.recommendations)
    with lake.working_copy(context.partition_key, PLOTS) as copy:  # the plot writer needs a folder
        plots = result.write_plots(copy / lake.key(context.partition_key, PLOTS))
    lineage.record(context.partition_key, asset_key="power_curves",
                   input_sha256s={design_file.name: sha256_file(design_file)},
                   output_sha256=curves_sha, output_path=curves_path, code_version=code_version(),
                   parameters={"recommendations_sha256": rec_sha, "n_trials": config.n_trials or "from file"},
                   seed=config.seed)
    rec = result.recommendations
    return dg.MaterializeResult(metadata={
        "scenarios": len(rec),
        "recommended_n": dg.MetadataValue.md(md_table(labelled_recommendations(rec).to_dict("records"))),
        "curves": dg.MetadataValue.path(curves_path),
        "plots": dg.MetadataValue.path(lake.uri(context.partition_key, PLOTS) if plots else ""),
        "seed": config.seed,
    })
