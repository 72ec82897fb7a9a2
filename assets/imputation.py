"""Imputation assets: held-out comparison of imputers, the study's choice, the imputed dataset."""


import dagster as dg
import numpy as np
import pandas as pd

from assets.missingness import missingness_profile
from assets.study_data import load_study_data, study_matrix
from orchestration.partitions import tenant_study_partitions
from orchestration.resources import LakeResource, LineageResource, RegistryResource
from trialsynth.artifacts import save_model
from trialsynth.hashing import sha256_bytes, sha256_file
from trialsynth.markdown import md_table
from trialsynth.names import split_partition_key
from trialsynth.study_config import ImputationConfig, StudyConfig
from trialsynth.version import code_version

CHOICE = "imputation/choice.json"
# Subject-visit rows the imputer comparison runs on: above it, a seeded sample of whole subjects. The
# held-out RMSE of a few thousand subjects decides between imputers as well as every row would, while
# the comparison's cost grew faster than quadratically with the rows (KNN on tied values: 5 s of CPU
# at 30,000 rows, 460 s at 120,000; benchmarks/results/full_size.md).
BENCHMARK_MAX_ROWS = 20_000
DONORS = "imputation/donors.parquet"  # KNN fills only: every filled cell's donors (models.impute.fill)


class ImputationRunConfig(dg.Config):
    """Optional per-run overrides of the study config's imputation settings (the product API sets them,
    trialsynth/api/jobs.py); empty values keep the study config."""

    candidates: list[str] = []
    mechanism: str = ""  # MCAR | MAR | MNAR: how observed cells are hidden for the comparison
    rate: float = 0.0
    repeats: int = 0
    seed: int | None = None

    def apply(self, cfg: StudyConfig) -> StudyConfig:
        update = {k: v for k, v in (("candidates", self.candidates), ("mechanism", self.mechanism),
                                    ("rate", self.rate), ("repeats", self.repeats)) if v}
        imputation = ImputationConfig.model_validate({**cfg.imputation.model_dump(), **update})
        return cfg.model_copy(update={"imputation": imputation, "seed": cfg.seed if self.seed is None else self.seed})


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="imputation",
    deps=[missingness_profile, study_matrix],
    kinds={"python", "parquet"},
    description="Hides observed cells by the one mechanism the study config names (imputation.mechanism: MCAR, "
    "MAR or MNAR; metadata `ran` states the mechanism, rate, repeats, candidates and config file this run used) "
    "at its rate, imputes them with each candidate imputer and scores RMSE on the [0,1] scale (as the GAIN paper), Wasserstein and pre/post deltas over repeats; "
    f"picks the study's imputer by that held-out score and records why it won. Studies with more than "
    f"{BENCHMARK_MAX_ROWS:,} subject-visits are compared on a seeded sample of whole subjects of that size "
    "(`ran` says so); the chosen imputer fills every row.",
)
def imputation_benchmark(context: dg.AssetExecutionContext, config: ImputationRunConfig, lake: LakeResource,
                         lineage: LineageResource) -> dg.MaterializeResult:
    from models.impute.evaluate import evaluate_imputers, select_imputer  # torch: at run time, not at load
    from models.impute.fill import fill_plan

    pk = context.partition_key
    study_cfg, config_path = lake.study_config(pk)
    study_cfg = config.apply(study_cfg)
    cfg = study_cfg.imputation
    data = load_study_data(lake, pk)
    matrix = benchmark_sample(data.matrix.where(data.scheduled), BENCHMARK_MAX_ROWS, study_cfg.seed)
    sampled = "" if len(matrix) == len(data.matrix) else (
        f" on a seeded sample of {matrix.index.get_level_values('USUBJID').nunique():,} subjects "
        f"({len(matrix):,} of {len(data.matrix):,} subject-visits)")
    matrix = matrix.reset_index(drop=True)
    specs = {name: cfg.params.get(name, {}) for name in cfg.candidates}
    context.log.info(f"comparing {', '.join(specs)} on {matrix.shape[0]} x {matrix.shape[1]} "
                     f"({cfg.mechanism} {cfg.rate:.0%}, {cfg.repeats} repeats)")
    result = evaluate_imputers(matrix, specs, mechanism=cfg.mechanism, rate=cfg.rate, repeats=cfg.repeats,
                               random_state=study_cfg.seed)
    choice = select_imputer(result)
    plan = fill_plan(cfg.fill, choice.name, choice.params, choice.reason, cfg.params)
    table = result.table("rmse").reset_index()
    summary = result.summary.assign(mechanism=cfg.mechanism, rate=cfg.rate)
    bench_path, bench_sha = lake.write_table(pk, "imputation/benchmark.parquet", summary)
    choice_doc = {"imputer": choice.name, "params": choice.params, "rmse": choice.score, "reason": choice.reason,
                  "mechanism": cfg.mechanism, "rate": cfg.rate, "repeats": cfg.repeats, "seed": study_cfg.seed,
                  "fill": cfg.fill, "fill_imputer": plan.imputer, "fill_params": plan.params, "fill_reason": plan.reason}
    lake.write_json(pk, CHOICE, choice_doc)
    lineage.record(pk, asset_key="imputation_benchmark",
                   input_sha256s={"study_config": sha256_file(config_path) if config_path else "defaults"},
                   output_sha256=bench_sha, output_path=bench_path, code_version=code_version(), parameters=choice_doc, seed=study_cfg.seed)
    return dg.MaterializeResult(metadata={
        "ran": f"{cfg.mechanism} at {cfg.rate:.0%} of observed cells{sampled}, {cfg.repeats} repeat(s), seed {study_cfg.seed}; "
               f"candidates {', '.join(specs)}; from {config_path or 'the default study config'}",
        "rmse_table": dg.MetadataValue.md(md_table(table.to_dict("records"))),
        "chosen_imputer": choice.name,
        "why": choice.reason,
        "fills_with": plan.reason,
        "benchmark": dg.MetadataValue.path(str(bench_path)),
    })


def benchmark_sample(matrix: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """The rows of a seeded random sample of whole subjects (index level USUBJID) holding at most
    ``max_rows`` rows; ``matrix`` itself when it is no larger."""
    if len(matrix) <= max_rows:
        return matrix
    subjects = matrix.index.get_level_values("USUBJID")
    order = np.random.default_rng(seed).permutation(subjects.unique())
    rows = subjects.value_counts().reindex(order).cumsum().to_numpy()
    return matrix[subjects.isin(order[: np.searchsorted(rows, max_rows, side="right")])]


def imputation_delta(observed: pd.DataFrame, imputed: pd.DataFrame, filled: pd.DataFrame, imputer: str) -> pd.DataFrame:
    """Per variable: observed-only vs observed+imputed mean/sd, and Wasserstein(observed, imputed values)."""
    from scipy.stats import wasserstein_distance

    rows = []
    for col in observed.columns:
        obs = observed[col].dropna().to_numpy()
        new = imputed.loc[filled[col], col].to_numpy()
        post = np.concatenate([obs, new])
        rows.append({"variable": col, "imputer": imputer, "pre_mean": obs.mean(), "post_mean": post.mean(),
                     "pre_sd": obs.std(ddof=1), "post_sd": post.std(ddof=1), "delta_mean": post.mean() - obs.mean(),
                     "wasserstein": wasserstein_distance(obs, new) if len(new) else 0.0,
                     "n_observed": len(obs), "n_imputed": len(new)})
    return pd.DataFrame(rows)


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="imputation",
    deps=[imputation_benchmark, study_matrix],
    kinds={"python", "parquet"},
    description="Analysis-ready subject x visit x variable table: scheduled cells only, gaps filled by the "
    "imputer the benchmark chose, or by KNN 'closest imputation' when the study config sets imputation.fill: knn "
    "(flagged IMPUTED), with pre vs post deltas per variable. Wherever KNN fills a cell, its donors (subject, "
    "visit, rank, distance, value, weight) are written beside it to imputation/donors.parquet.",
)
def imputed_dataset(context: dg.AssetExecutionContext, lake: LakeResource, lineage: LineageResource,
                    registry: RegistryResource) -> dg.MaterializeResult:
    from models.impute.baselines import make_imputer
    from models.impute.fill import fill_with_donors

    pk = context.partition_key
    choice = lake.read_json(pk, CHOICE)
    name, params = choice.get("fill_imputer", choice["imputer"]), choice.get("fill_params", choice["params"])
    data = load_study_data(lake, pk)
    observed = data.matrix.where(data.scheduled)
    donors_path, donors_sha = None, None
    if name == "knn":  # closest imputation: record every filled cell's donors
        knn = fill_with_donors(observed, **params, label_levels=["USUBJID", "VISITNUM", "VISIT"])
        imputer, imputed = knn.model, knn.imputed
        donors_path, donors_sha = lake.write_table(pk, DONORS, knn.donors)
    else:
        imputer = make_imputer(name, random_state=choice["seed"], **params)
        values = imputer.fit_transform(observed.reset_index(drop=True))
        imputed = pd.DataFrame(values, index=observed.index, columns=observed.columns)
    filled = data.scheduled_missing
    if imputed.where(data.scheduled).isna().to_numpy()[data.scheduled.to_numpy()].any():
        raise dg.Failure(f"imputer {name} left scheduled cells empty; refusing a silent NaN")
    long = imputed.where(data.scheduled)
    long.columns.name = "VARIABLE"
    long = long.stack(future_stack=True).rename("VALUE").reset_index()
    long["IMPUTED"] = filled.stack(future_stack=True).to_numpy()
    long = long[data.scheduled.stack(future_stack=True).to_numpy()]
    out_path, out_sha = lake.write_table(pk, "imputation/imputed_dataset.parquet", long)
    delta = imputation_delta(observed, imputed, filled, name)
    _delta_path, delta_sha = lake.write_table(pk, "imputation/delta.parquet", delta)

    artifact = save_model(imputer, lake.key(pk, f"imputation/models/{context.run_id}.pkl"), split_partition_key(pk)[0],
                          store=lake.store()).uri  # pickled, encrypted with the tenant's key
    training_sha = sha256_bytes(observed.to_csv().encode())
    model_id = registry.get().register(
        kind="imputer", name=f"{pk.replace('|', '/')}/{name}", trained_by=f"dagster run {context.run_id}",
        training_data_sha256=training_sha, training_data_version=context.run_id, artifact_path=artifact,
        parameters=params, seed=choice["seed"],
        metrics={"heldout_rmse": choice["rmse"]} if name == choice["imputer"] else {},
        code_version=code_version(),
    )
    lineage.record(pk, asset_key="imputed_dataset", input_sha256s={"visit_matrix": training_sha},
                   output_sha256=out_sha, output_path=out_path, code_version=code_version(),
                   parameters={"imputer": name, "params": params, "model_id": model_id,
                               "delta_sha256": delta_sha, "donors_sha256": donors_sha}, seed=choice["seed"])
    return dg.MaterializeResult(metadata={
        "imputer": name,
        "why": choice.get("fill_reason", choice["reason"]),
        "donors": dg.MetadataValue.path(str(donors_path)) if donors_path else "none (not a KNN fill)",
        "model_id": model_id,
        "cells_imputed": int(filled.to_numpy().sum()),
        "cells_scheduled": int(data.scheduled.to_numpy().sum()),
        "delta": dg.MetadataValue.md(md_table(delta.round(4).to_dict("records"))),
        "path": dg.MetadataValue.path(str(out_path)),
    })
