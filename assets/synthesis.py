"""Synthesis assets: train a synthesizer on the study's subject-level baseline table, register it,
generate a virtual cohort from an approved model, and prove it with the evidence pack."""

import json
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd

from assets.imputation import imputation_benchmark
from assets.study_data import load_study_data
from models.evidence import build_evidence_pack, write_pack
from models.impute.baselines import make_imputer
from models.synth import CTGANSynthesizer, GaussianCopulaSynthesizer
from orchestration.partitions import tenant_study_partitions
from orchestration.resources import LakeResource, LineageResource, RegistryResource
from trialsynth.hashing import sha256_file
from trialsynth.markdown import md_table
from trialsynth.names import split_partition_key
from trialsynth.version import code_version

SYNTHESIZERS = {"ctgan": CTGANSynthesizer, "copula": GaussianCopulaSynthesizer}
DROP_COLUMNS = ("SITEID",)  # operational, and a quasi-identifier together with age/sex/race
MODEL_POINTER = "synthesis/model.json"


def training_split(baseline: pd.DataFrame, holdout: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Subject-level table without identifiers, split into (train, holdout) by a seeded permutation."""
    table = baseline.drop(columns=[c for c in DROP_COLUMNS if c in baseline.columns]).reset_index(drop=True)
    table = table.loc[:, table.nunique() >= 2]  # constant or empty columns carry nothing to learn
    order = np.random.default_rng(seed).permutation(len(table))
    n_holdout = max(1, round(holdout * len(table)))
    return table.iloc[order[n_holdout:]].reset_index(drop=True), table.iloc[order[:n_holdout]].reset_index(drop=True)


def _progress_logger(context: dg.AssetExecutionContext):
    """Log every 25th training record at INFO (all of them at DEBUG)."""

    def report(record: dict) -> None:
        epoch = record.get("epoch")
        level = context.log.info if epoch is None or epoch % 25 == 0 else context.log.debug
        level(", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    return report


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="synthesis",
    deps=[["bronze", "dm"], ["bronze", "vs"], ["bronze", "lb"]],
    kinds={"pytorch", "python"},
    description="A synthesizer (conditional GAN or Gaussian copula) trained on one row per randomized subject "
    "(demographics, arm, baseline vitals and labs); registered as a draft in the model registry.",
)
def synthesizer_model(context: dg.AssetExecutionContext, lake: LakeResource, lineage: LineageResource,
                      registry: RegistryResource) -> dg.MaterializeResult:
    pk = context.partition_key
    cfg = lake.study_config(pk)[0]
    train, holdout = training_split(load_study_data(lake, pk).baseline, cfg.synthesis.holdout, cfg.seed)
    train_path, train_sha = lake.write_table(pk, "synthesis/train.parquet", train)
    lake.write_table(pk, "synthesis/holdout.parquet", holdout)
    params = dict(cfg.synthesis.params)
    model = SYNTHESIZERS[cfg.synthesis.synthesizer](random_state=cfg.seed, verbose=False,
                                                    progress=_progress_logger(context), **params)
    context.log.info(f"training {type(model).__name__} on {train.shape[0]} subjects x {train.shape[1]} columns")
    started = datetime.now(UTC)
    model.fit(train)
    seconds = (datetime.now(UTC) - started).total_seconds()
    model.set_params(progress=None)  # the callback is bound to this run; the artifact must not carry it
    artifact = model.save(lake.study_dir(pk) / "synthesis" / "models" / f"{context.run_id}.pkl")
    model_id = registry.get().register(
        kind="synthesizer", name=f"{pk.replace('|', '/')}/{cfg.synthesis.synthesizer}",
        trained_by=f"dagster run {context.run_id}", training_data_sha256=train_sha,
        training_data_version=context.run_id, artifact_path=artifact, parameters=params, seed=cfg.seed,
        metrics={"fit_seconds": seconds, "n_train": len(train)}, code_version=code_version(),
    )
    (lake.study_dir(pk) / MODEL_POINTER).write_text(json.dumps({"model_id": model_id, "training_sha256": train_sha}))
    lineage.record(pk, asset_key="synthesizer_model", input_sha256s={"train.parquet": train_sha},
                   output_sha256=sha256_file(artifact), code_version=code_version(),
                   parameters={"synthesizer": cfg.synthesis.synthesizer, "params": params, "model_id": model_id},
                   seed=cfg.seed)
    return dg.MaterializeResult(metadata={"model_id": model_id, "status": "draft", "fit_seconds": seconds,
                                          "train_rows": len(train), "columns": list(train.columns),
                                          "train": dg.MetadataValue.path(str(train_path))})


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="synthesis",
    deps=[synthesizer_model],
    kinds={"pytorch", "parquet"},
    description="A virtual cohort of the size and strata in the study's config, from an approved model "
    "(or a draft when the study config opts out explicitly, which lineage records).",
)
def synthetic_cohort(context: dg.AssetExecutionContext, lake: LakeResource, lineage: LineageResource,
                     registry: RegistryResource) -> dg.MaterializeResult:
    pk = context.partition_key
    cfg = lake.study_config(pk)[0]
    pointer = json.loads((lake.study_dir(pk) / MODEL_POINTER).read_text())
    record = registry.get().resolve_for_generation(pointer["model_id"], allow_unapproved=cfg.synthesis.allow_unapproved)
    if record.status != "approved":
        context.log.warning(f"model {record.id} is {record.status}: generating only because the study config "
                            "sets synthesis.allow_unapproved")
    model = SYNTHESIZERS[cfg.synthesis.synthesizer].load(record.artifact_path)
    cohort = model.sample(cfg.synthesis.n, conditions=cfg.synthesis.conditions or None, random_state=cfg.seed)
    path, sha = lake.write_table(pk, "synthesis/synthetic_cohort.parquet", cohort)
    lineage.record(pk, asset_key="synthetic_cohort", input_sha256s={"training_data": record.training_data_sha256,
                                                                    "model_artifact": record.artifact_sha256},
                   output_sha256=sha, code_version=code_version(),
                   parameters={"model_id": record.id, "model_status": record.status, "n": cfg.synthesis.n,
                               "conditions": cfg.synthesis.conditions}, seed=cfg.seed)
    return dg.MaterializeResult(metadata={"model_id": record.id, "model_status": record.status,
                                          "rows": len(cohort), "conditions": dg.MetadataValue.json(cfg.synthesis.conditions),
                                          "path": dg.MetadataValue.path(str(path))})


def _impute_for_overlay(train: pd.DataFrame, choice_path, seed: int) -> pd.DataFrame | None:
    """The training table with its numeric gaps filled by the study's chosen imputer (for overlays)."""
    if not choice_path.exists():
        return None
    choice = json.loads(choice_path.read_text())
    numeric = train.select_dtypes("number")
    numeric = numeric.loc[:, numeric.nunique() > 1]
    if numeric.empty or not numeric.isna().any().any():
        return None
    filled = make_imputer(choice["imputer"], random_state=seed, **choice["params"]).fit_transform(numeric)
    out = train.copy()
    out[numeric.columns] = filled
    return out


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="synthesis",
    deps=[synthetic_cohort, imputation_benchmark],
    kinds={"python", "html"},
    check_specs=[dg.AssetCheckSpec("evidence_passes", asset="evidence_pack",
                                   description="No evidence metric is at 'fail' against the study's thresholds.")],
    description="Fidelity, utility and privacy of the synthetic cohort vs the real training data and a real "
    "holdout: JSON for machines, a self-contained HTML report for reviewers.",
)
def evidence_pack(context: dg.AssetExecutionContext, lake: LakeResource, lineage: LineageResource):
    pk = context.partition_key
    tenant, study = split_partition_key(pk)
    cfg = lake.study_config(pk)[0]
    study_dir = lake.study_dir(pk)
    train = pd.read_parquet(study_dir / "synthesis" / "train.parquet").drop(columns=["tenant_id", "study_id"])
    holdout = pd.read_parquet(study_dir / "synthesis" / "holdout.parquet").drop(columns=["tenant_id", "study_id"])
    synthetic = pd.read_parquet(study_dir / "synthesis" / "synthetic_cohort.parquet").drop(columns=["tenant_id", "study_id"])
    # A column with no value in the holdout (e.g. a lab only some subjects had) cannot be compared.
    empty = [c for c in train.columns if holdout[c].isna().all() or synthetic[c].isna().all()]
    if empty:
        context.log.warning(f"left out of the evidence (no values in holdout or synthetic rows): {empty}")
    train, holdout = train.drop(columns=empty), holdout.drop(columns=empty)
    categorical = [c for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])]
    pointer = json.loads((study_dir / MODEL_POINTER).read_text())
    run_id = context.run_id
    pack = build_evidence_pack(
        train, synthetic[train.columns], holdout, categorical,
        target=cfg.evidence.target if cfg.evidence.target in train.columns else None,
        imputed=_impute_for_overlay(train, study_dir / "imputation" / "choice.json", cfg.seed),
        thresholds=cfg.evidence.thresholds or None, run_id=run_id, random_state=cfg.seed,
        context={"tenant": tenant, "study": study, "model_id": pointer["model_id"], "seed": cfg.seed,
                 "training_data_sha256": pointer["training_sha256"]},
    )
    paths = write_pack(pack, study_dir / "evidence" / run_id)
    metrics = pack.metrics_frame().assign(run_id=run_id, created_at=datetime.now(UTC).isoformat())
    _mpath, msha = lake.write_table(pk, f"evidence/{run_id}/metrics.parquet", metrics)
    lineage.record(pk, asset_key="evidence_pack",
                   input_sha256s={"synthetic_cohort": sha256_file(study_dir / "synthesis" / "synthetic_cohort.parquet"),
                                  "training_data": pointer["training_sha256"]},
                   output_sha256=sha256_file(paths["json"]), code_version=code_version(),
                   parameters={"run_id": run_id, "overall": pack.overall_level, "metrics_sha256": msha,
                               "thresholds": cfg.evidence.thresholds}, seed=cfg.seed)
    failing = metrics[metrics["level"] == "fail"]
    yield dg.MaterializeResult(metadata={
        "overall": pack.overall_level,
        "report": dg.MetadataValue.url(paths["html"].resolve().as_uri()),
        "report_path": dg.MetadataValue.path(str(paths["html"])),
        "summary": dg.MetadataValue.text(pack.summary_text()),
        "show": f"trialsynth evidence show {run_id}",
        "metrics": dg.MetadataValue.md(md_table(
            metrics[metrics["variable"].isna()][["metric", "value", "threshold_warn", "threshold_fail", "level"]].to_dict("records"))),
    })
    yield dg.AssetCheckResult(
        check_name="evidence_passes", passed=failing.empty, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failing_metrics": dg.MetadataValue.json(
            failing[["metric", "variable", "value"]].head(25).astype(str).to_dict("records")),
                  "n_failing": len(failing),
                  "overall": pack.overall_level},
    )
