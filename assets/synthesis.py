"""Synthesis assets: train a synthesizer on the study's subject-level baseline table, register it,
generate a virtual cohort from an approved model, and prove it with the evidence pack.

A study whose model is still a draft ends its run SUCCESS with the check ``model_approved`` at WARN
("waiting for approval of model X") and no cohort; the same training data, synthesis config, seed and
code reuse the registered model; once it is approved, the runner's next call (or any materialization)
generates. With ``synthesis.privacy`` the model is differentially private (DP copula or MST), its
budget is recorded in the registry against the study's data version and capped, and the evidence pack
states the guarantee ("none" without one)."""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np
import pandas as pd

from assets.imputation import CHOICE, imputation_benchmark
from assets.study_data import load_study_data, study_matrix
from orchestration.partitions import study_check, tenant_study_partitions
from orchestration.resources import LakeResource, LineageResource, RegistryResource
from trialsynth.artifacts import save_model, stored_location, write_encrypted_pack
from trialsynth.hashing import sha256_bytes
from trialsynth.markdown import md_table
from trialsynth.names import partition_key, split_partition_key
from trialsynth.registry import (
    ModelRegistry,
    PrivacyBudgetError,
    PrivacySpend,
    RetiredModelError,
    UnknownModelError,
)
from trialsynth.study_config import StudyConfig, SynthesisConfig
from trialsynth.version import code_version

if TYPE_CHECKING:  # models.synth and models.evidence import torch and scikit-learn: at run time, not at load
    from models.synth import BaseSynthesizer

DROP_COLUMNS = ("SITEID",)  # operational, and a quasi-identifier together with age/sex/race
MODEL_POINTER = "synthesis/model.json"
WAITING_MARKER = "synthesis/waiting.json"  # the study's cohort waits for approval of this model


class SynthesisRunConfig(dg.Config):
    """Optional per-run overrides of the study config's synthesis settings (the product API sets them,
    trialsynth/api/jobs.py); empty values keep the study config. ``params`` replace the study's when
    given or when ``synthesizer`` names another synthesizer; ``columns`` are :meth:`TableSchema.infer` overrides (kind
    categorical/ordinal/..., categories, min_value/max_value constraints, decimals); ``model_id``
    generates from that registered model instead of the study's latest. ``privacy`` ({epsilon, delta})
    sets this training's differential-privacy budget (with a DP ``synthesizer``); the study config's
    cap still bounds what all trainings on its data spend, and no run can change it."""

    synthesizer: str = ""
    params: dict[str, Any] = {}
    seed: int | None = None
    n: int = 0
    conditions: dict[str, Any] = {}
    columns: dict[str, dict[str, Any]] = {}
    model_id: str = ""
    privacy: dict[str, float] = {}

    def apply(self, cfg: StudyConfig) -> StudyConfig:
        update = {k: v for k, v in (("synthesizer", self.synthesizer), ("n", self.n), ("conditions", self.conditions)) if v}
        if self.params or self.synthesizer not in ("", cfg.synthesis.synthesizer):
            update["params"] = self.params
        if self.privacy:
            if set(self.privacy) - {"epsilon", "delta"}:
                raise ValueError(f"privacy: a run sets only epsilon and delta, not {sorted(set(self.privacy) - {'epsilon', 'delta'})} "
                                 "(the cap is the study config's)")
            study = cfg.synthesis.privacy.model_dump() if cfg.synthesis.privacy else {}
            update["privacy"] = {**study, **self.privacy}
        synthesis = SynthesisConfig.model_validate({**cfg.synthesis.model_dump(), **update})
        return cfg.model_copy(update={"synthesis": synthesis, "seed": cfg.seed if self.seed is None else self.seed})

    def pointer(self, lake: LakeResource, partition_key: str) -> dict:
        """The study's model pointer, naming ``model_id`` instead when one is given."""
        pointer = lake.read_json(partition_key, MODEL_POINTER)
        return {**pointer, "model_id": self.model_id} if self.model_id else pointer


def training_split(baseline: pd.DataFrame, holdout: float, seed: int,
                   drop_constant: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Subject-level table without identifiers, split into (train, holdout) by a seeded permutation.

    ``drop_constant`` leaves out constant and empty columns (they carry nothing to learn); a
    differentially private synthesizer keeps them, since choosing columns by their values would leak.
    """
    table = baseline.drop(columns=[c for c in DROP_COLUMNS if c in baseline.columns]).reset_index(drop=True)
    if drop_constant:
        table = table.loc[:, table.nunique() >= 2]
    order = np.random.default_rng(seed).permutation(len(table))
    n_holdout = max(1, round(holdout * len(table)))
    return table.iloc[order[n_holdout:]].reset_index(drop=True), table.iloc[order[:n_holdout]].reset_index(drop=True)


def study_data_version(baseline: pd.DataFrame) -> str:
    """sha256 of the subject-level table every training split is drawn from (all subjects, rows in subject
    order): the privacy account of a DP training, whatever its seed or holdout share
    (:class:`trialsynth.registry.PrivacySpend`)."""
    return sha256_bytes(baseline.sort_index(kind="stable").to_csv().encode())


def _progress_logger(context: dg.AssetExecutionContext):
    """Log every 25th training record at INFO (all of them at DEBUG)."""

    def report(record: dict) -> None:
        epoch = record.get("epoch")
        level = context.log.info if epoch is None or epoch % 25 == 0 else context.log.debug
        level(", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    return report


def synthesizer_class(name: str) -> "type[BaseSynthesizer]":
    """The synthesizer class a study config's ``synthesis.synthesizer`` names."""
    from models.synth import CTGANSynthesizer, GaussianCopulaSynthesizer
    from models.synth.dp import DPGaussianCopulaSynthesizer, MSTSynthesizer

    return {"ctgan": CTGANSynthesizer, "copula": GaussianCopulaSynthesizer,
            "dp_copula": DPGaussianCopulaSynthesizer, "mst": MSTSynthesizer}[name]


def make_synthesizer(cfg: StudyConfig, columns: dict[str, dict[str, Any]],
                     progress: Callable[[dict], None] | None) -> "BaseSynthesizer":
    """The study's synthesizer, unfitted; a DP one gets its budget and ``columns`` as its public domain."""
    privacy = cfg.synthesis.privacy
    public = {name: spec for name, spec in columns.items() if spec is not None}  # None: left out of the table
    budget = {} if privacy is None else {"epsilon": privacy.epsilon, "delta": privacy.delta, "columns": public,
                                         "estimate_domain": privacy.estimate_domain}
    return synthesizer_class(cfg.synthesis.synthesizer)(random_state=cfg.seed, verbose=False, progress=progress,
                                                        **cfg.synthesis.params, **budget)


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="synthesis",
    deps=[study_matrix],
    kinds={"pytorch", "python"},
    description="A synthesizer (conditional GAN, Gaussian copula, or with a differential-privacy budget the DP "
    "copula or MST) trained on one row per randomized subject (demographics, arm, baseline vitals and labs); "
    "registered as a draft in the model registry, with the privacy budget it spent. The model registered for the "
    "same training data, synthesis config, seed and code is reused, never trained again (nor spent again); a "
    "training that would pass the study's privacy cap is refused.",
)
def synthesizer_model(context: dg.AssetExecutionContext, config: SynthesisRunConfig, lake: LakeResource,
                      lineage: LineageResource, registry: RegistryResource) -> dg.MaterializeResult:
    pk = context.partition_key
    study_cfg = lake.study_config(pk)[0]
    cfg = config.apply(study_cfg)
    privacy = cfg.synthesis.privacy
    baseline = load_study_data(lake, pk).baseline
    train, holdout = training_split(baseline, cfg.synthesis.holdout, cfg.seed, drop_constant=privacy is None)
    cfg, choice = _synthesizer_for_size(cfg, study_cfg, config, len(train))
    context.log.info(f"synthesizer: {choice.reason}")
    train_path, train_sha = lake.write_table(pk, "synthesis/train.parquet", train)
    lake.write_table(pk, "synthesis/holdout.parquet", holdout)
    params = dict(cfg.synthesis.params)
    columns = {**{name: c.model_dump(exclude_none=True) for name, c in cfg.synthesis.columns.items()}, **config.columns}
    parameters = {**params, **({"columns": columns} if columns else {}),
                  **({"privacy": privacy.model_dump()} if privacy else {})}
    identity = {"kind": "synthesizer", "name": f"{pk.replace('|', '/')}/{cfg.synthesis.synthesizer}",
                "training_data_sha256": train_sha, "seed": cfg.seed, "parameters": parameters,
                "code_version": code_version()}
    spend = None if privacy is None else PrivacySpend(
        study=pk.replace("|", "/"), mechanism=cfg.synthesis.synthesizer, epsilon=privacy.epsilon,
        delta=privacy.delta, cap_epsilon=privacy.cap_budget.epsilon, cap_delta=privacy.cap_budget.delta,
        data_version=study_data_version(baseline))
    models = registry.get()
    try:
        reused = models.find_reusable(**identity)
    except RetiredModelError as exc:
        raise dg.Failure(description=str(exc)) from None
    if reused is not None:
        model_id, artifact, status = reused.id, reused.artifact_uri, reused.status
        context.log.info(f"reused model {model_id} ({status}): same training data, synthesis config, seed and code")
        seconds = None
    else:
        try:
            left = None if spend is None else models.check_privacy_budget(spend, train_sha)
        except PrivacyBudgetError as exc:
            raise dg.Failure(description=str(exc)) from None
        model = make_synthesizer(cfg, columns, _progress_logger(context))
        context.log.info(f"training {type(model).__name__} on {train.shape[0]} subjects x {train.shape[1]} columns, "
                         f"privacy {cfg.synthesis.privacy_label}"
                         + ("" if left is None else f" (left after it: epsilon={left[0]:g}, delta={left[1]:g})"))
        started = datetime.now(UTC)
        if privacy is not None:
            model.fit(train.drop(columns=[c for c, spec in columns.items() if spec is None]))
        else:
            from models.synth.schema import TableSchema

            model.fit(train, schema=TableSchema.infer(train, columns) if columns else None)
        seconds = (datetime.now(UTC) - started).total_seconds()
        model.set_params(progress=None)  # the callback is bound to this run; the artifact must not carry it
        artifact = save_model(model, lake.key(pk, f"synthesis/models/{context.run_id}.pkl"), split_partition_key(pk)[0],
                              store=lake.store()).uri  # encrypted with the tenant's key
        try:
            model_id, status = models.register(
                **identity, trained_by=f"dagster run {context.run_id}", training_data_version=context.run_id,
                artifact_path=artifact, metrics={"fit_seconds": seconds, "n_train": len(train)}, privacy=spend,
            ), "draft"
        except PrivacyBudgetError as exc:  # another run spent the budget meanwhile
            lake.delete(pk, f"synthesis/models/{context.run_id}.pkl")
            raise dg.Failure(description=str(exc)) from None
    lake.write_json(pk, MODEL_POINTER, {"model_id": model_id, "training_sha256": train_sha, "synthesizer": choice.name,
                                        "synthesizer_reason": choice.reason})
    artifact_at, artifact_sha = stored_location(artifact, lake.store())  # sha256 without the key slot: rewrap keeps it
    lineage.record(pk, asset_key="synthesizer_model", input_sha256s={"train.parquet": train_sha},
                   output_sha256=artifact_sha, output_path=artifact_at, code_version=code_version(),
                   parameters={"synthesizer": cfg.synthesis.synthesizer, "params": params, "model_id": model_id,
                               "reused": reused is not None, "privacy": cfg.synthesis.privacy_label}, seed=cfg.seed)
    return dg.MaterializeResult(metadata={
        "model_id": model_id, "status": status, "privacy": cfg.synthesis.privacy_label,
        "synthesizer": choice.name, "why_this_synthesizer": choice.reason,
        "training": f"reused model {model_id}" if reused is not None else f"trained model {model_id}",
        "fit_seconds": seconds, "train_rows": len(train), "columns": list(train.columns),
        "train": dg.MetadataValue.path(str(train_path))})


def _synthesizer_for_size(cfg: StudyConfig, study_cfg: StudyConfig, config: SynthesisRunConfig, n_rows: int
                          ) -> tuple[StudyConfig, Any]:
    """``cfg`` with the synthesizer the training size calls for (:mod:`models.synth.choice`), and the choice:
    a default CTGAN below the size where it is known to fail becomes the Gaussian copula."""
    from models.synth.choice import choose_synthesizer

    explicit = bool({"synthesizer", "params"} & study_cfg.synthesis.model_fields_set) or bool(
        config.synthesizer or config.params)
    choice = choose_synthesizer(cfg.synthesis.synthesizer, n_rows, explicit=explicit)
    if choice.name != cfg.synthesis.synthesizer:
        synthesis = cfg.synthesis.model_copy(update={"synthesizer": choice.name, "params": {}})
        cfg = cfg.model_copy(update={"synthesis": synthesis})
    return cfg, choice


def _utility_targets(target: str | list[str] | None, columns: list[str]) -> str | list[str] | None:
    """The study's utility target(s) present in the training table; "auto" and None pass through."""
    if target is None or target == "auto":
        return target
    present = [t for t in ([target] if isinstance(target, str) else target) if t in columns]
    return present or None


def waiting_message(model_id: str) -> str:
    """What a study whose cohort waits for a draft model tells its reviewer."""
    return (f"waiting for approval of model {model_id}: approve with "
            f"`trialsynth registry approve {model_id} --by NAME --why REASON`")


def waiting_for_approval(lake: LakeResource, registry: ModelRegistry) -> dict[str, tuple[str, str]]:
    """Partition key -> (model id, its registry status now; "unknown" when not registered) of every
    study whose cohort waits for approval of a model. Each model is looked up for its study's tenant
    (on Postgres, row-level security shows a tenant only its own models)."""
    from trialsynth.tenancy.context import tenant_scope

    found = {}
    store = lake.store()
    for marker in store.list(pattern=f"*/*/{WAITING_MARKER}"):
        tenant, study = marker.split("/")[:2]
        model_id = store.read_json(marker)["model_id"]
        try:
            with tenant_scope(tenant):
                status = registry.get(model_id).status
        except UnknownModelError:
            status = "unknown"
        found[partition_key(tenant, study)] = (model_id, status)
    return found


def approved_while_waiting(lake: LakeResource, registry: ModelRegistry) -> dict[str, str]:
    """Partition key -> model id of every study whose cohort waits for a model that is approved now."""
    return {pk: model_id for pk, (model_id, status) in waiting_for_approval(lake, registry).items()
            if status == "approved"}


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="synthesis",
    deps=[synthesizer_model],
    kinds={"pytorch", "parquet"},
    output_required=False,
    check_specs=[study_check(
        "model_approved", asset="synthetic_cohort",
        description="The cohort comes from an approved model. WARN while the study waits for approval of its "
        "draft model (no cohort is made, the evidence pack waits), or when the study config lets a draft generate.")],
    description="A virtual cohort of the size and strata in the study's config, from an approved model "
    "(or a draft when the study config opts out explicitly, which lineage records). While the model is a "
    "draft, nothing is generated and the check model_approved says which model waits for approval.",
)
def synthetic_cohort(context: dg.AssetExecutionContext, config: SynthesisRunConfig, lake: LakeResource,
                     lineage: LineageResource, registry: RegistryResource):
    pk = context.partition_key
    cfg = config.apply(lake.study_config(pk)[0])
    pointer = config.pointer(lake, pk)
    models = registry.get()
    if models.get(pointer["model_id"]).status == "draft" and not cfg.synthesis.allow_unapproved:
        message = waiting_message(pointer["model_id"])
        context.log.warning(message)
        lake.write_json(pk, WAITING_MARKER, {"model_id": pointer["model_id"], "run_id": context.run_id})
        yield dg.AssetCheckResult(check_name="model_approved", passed=False, severity=dg.AssetCheckSeverity.WARN,
                                  description=message, metadata={"model_id": pointer["model_id"], "status": "draft"})
        return
    record = models.resolve_for_generation(pointer["model_id"], allow_unapproved=cfg.synthesis.allow_unapproved)
    if record.status != "approved":
        context.log.warning(f"model {record.id} is {record.status}: generating only because the study config "
                            "sets synthesis.allow_unapproved")
    from models.synth import BaseSynthesizer

    model = models.load_model(record.id, expect=BaseSynthesizer)  # the class the size rule chose, whatever the config says
    cohort = model.sample(cfg.synthesis.n, conditions=cfg.synthesis.conditions or None, random_state=cfg.seed)
    path, sha = lake.write_table(pk, "synthesis/synthetic_cohort.parquet", cohort)
    lake.delete(pk, WAITING_MARKER)
    lineage.record(pk, asset_key="synthetic_cohort", input_sha256s={"training_data": record.training_data_sha256,
                                                                    "model_artifact": record.artifact_sha256},
                   output_sha256=sha, output_path=path, code_version=code_version(),
                   parameters={"model_id": record.id, "model_status": record.status, "n": cfg.synthesis.n,
                               "conditions": cfg.synthesis.conditions}, seed=cfg.seed)
    yield dg.MaterializeResult(metadata={"model_id": record.id, "model_status": record.status,
                                         "rows": len(cohort), "conditions": dg.MetadataValue.json(cfg.synthesis.conditions),
                                         "path": dg.MetadataValue.path(str(path))})
    yield dg.AssetCheckResult(
        check_name="model_approved", passed=record.status == "approved", severity=dg.AssetCheckSeverity.WARN,
        description=f"generated from {record.status} model {record.id}"
        + ("" if record.status == "approved" else " because the study config sets synthesis.allow_unapproved"),
        metadata={"model_id": record.id, "status": record.status})


def _epsilon_curve_options(cfg: StudyConfig, context: dg.AssetExecutionContext) -> dict[str, Any]:
    """Options of the evidence pack's epsilon curve: the study's public column domain and delta."""
    privacy = cfg.synthesis.privacy
    return {"columns": {name: c.model_dump(exclude_none=True) for name, c in cfg.synthesis.columns.items()},
            "delta": privacy.delta if privacy else 1e-6, "progress": context.log.info}


def _report_link(tenant: str, study: str, run_id: str) -> dg.MetadataValue:
    """The HTML report over HTTP (the API's signed-link route; browsers refuse file:// links from the
    Dagster UI), or how to open it when this deployment has no link key (trialsynth/api/report_links.py)."""
    from trialsynth.api.report_links import LINK_SECRET_ENV, report_link
    from trialsynth.settings import get_settings

    url = report_link(get_settings(), tenant, study, run_id)
    if url is not None:
        return dg.MetadataValue.url(url)
    return dg.MetadataValue.text(f"no report link key (set ${LINK_SECRET_ENV} for the API and the runs): open it "
                                 f"with `trialsynth evidence show {run_id}` or GET /evidence/v1/runs/{run_id}?format=html")


def _impute_for_overlay(train: pd.DataFrame, choice: dict | None, seed: int) -> pd.DataFrame | None:
    """The training table with its numeric gaps filled by the study's chosen imputer (``choice``: the
    imputation benchmark's choice.json; None: no overlay)."""
    if choice is None:
        return None
    numeric = train.select_dtypes("number")
    numeric = numeric.loc[:, numeric.nunique() > 1]
    if numeric.empty or not numeric.isna().any().any():
        return None
    from models.impute.baselines import make_imputer

    filled = make_imputer(choice["imputer"], random_state=seed, **choice["params"]).fit_transform(numeric)
    out = train.copy()
    out[numeric.columns] = filled
    return out


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="synthesis",
    deps=[synthetic_cohort, imputation_benchmark],
    kinds={"python", "html"},
    check_specs=[study_check("evidence_passes", asset="evidence_pack",
                             description="No evidence metric is at 'fail' against the study's thresholds.")],
    description="Fidelity, utility and privacy of the synthetic cohort vs the real training data and a real "
    "holdout, and the model's formal privacy guarantee (or 'none'): JSON for machines, a self-contained HTML "
    "report for reviewers.",
)
def evidence_pack(context: dg.AssetExecutionContext, config: SynthesisRunConfig, lake: LakeResource,
                  lineage: LineageResource, registry: RegistryResource):
    from models.evidence import build_evidence_pack
    from models.synth import BaseSynthesizer

    pk = context.partition_key
    tenant, study = split_partition_key(pk)
    cfg = config.apply(lake.study_config(pk)[0])
    train, holdout, synthetic = (lake.read_table(pk, f"synthesis/{name}.parquet").drop(columns=["tenant_id", "study_id"])
                                 for name in ("train", "holdout", "synthetic_cohort"))
    # A column with no value in the holdout (e.g. a lab only some subjects had) cannot be compared.
    empty = [c for c in train.columns if holdout[c].isna().all() or synthetic[c].isna().all()]
    if empty:
        context.log.warning(f"left out of the evidence (no values in holdout or synthetic rows): {empty}")
    train, holdout = train.drop(columns=empty), holdout.drop(columns=empty)
    categorical = [c for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])]
    pointer = config.pointer(lake, pk)
    model = registry.get().load_model(pointer["model_id"], expect=BaseSynthesizer)
    run_id = context.run_id
    pack = build_evidence_pack(
        train, synthetic[train.columns], holdout, categorical,
        target=_utility_targets(cfg.evidence.target, list(train.columns)),
        imputed=_impute_for_overlay(train, lake.read_json(pk, CHOICE) if lake.exists(pk, CHOICE) else None, cfg.seed),
        thresholds=cfg.evidence.thresholds or None, run_id=run_id, random_state=cfg.seed,
        context={"tenant": tenant, "study": study, "model_id": pointer["model_id"], "seed": cfg.seed,
                 "training_data_sha256": pointer["training_sha256"]},
        privacy_guarantee=getattr(model, "privacy_", None),
        conditions=cfg.synthesis.conditions or None, closest_k=cfg.evidence.closest_k,
        notes=[f"synthesizer: {pointer['synthesizer_reason']}"] if "synthesizer_reason" in pointer else [],
        epsilon_curve=_epsilon_curve_options(cfg, context) if cfg.evidence.epsilon_curve else None,
    )
    for warning in pack.details["warnings"]:
        context.log.warning(warning)
    paths = write_encrypted_pack(pack, lake.key(pk, f"evidence/{run_id}"), tenant, store=lake.store())
    metrics = pack.metrics_frame().assign(run_id=run_id, created_at=datetime.now(UTC).isoformat())
    _mpath, msha = lake.write_table(pk, f"evidence/{run_id}/metrics.parquet", metrics)
    if pack.closest is not None:  # the same file write_pack wrote, with tenant_id, study_id and run_id for dbt
        paths["closest"], _csha = lake.write_table(pk, f"evidence/{run_id}/closest_records.parquet",
                                                   pack.closest.table.assign(run_id=run_id))
    lineage.record(pk, asset_key="evidence_pack",
                   input_sha256s={"synthetic_cohort": lake.sha256(pk, "synthesis/synthetic_cohort.parquet"),
                                  "training_data": pointer["training_sha256"]},
                   output_sha256=paths["json"].sha256, output_path=paths["json"].location, code_version=code_version(),
                   parameters={"run_id": run_id, "overall": pack.overall_level, "metrics_sha256": msha,
                               "thresholds": cfg.evidence.thresholds}, seed=cfg.seed)
    failing = metrics[metrics["level"] == "fail"]
    yield dg.MaterializeResult(metadata={
        "overall": pack.overall_level,
        "privacy_guarantee": pack.details["privacy_guarantee"]["guarantee"],
        "report": _report_link(tenant, study, run_id),
        "report_path": dg.MetadataValue.path(paths["html"].location),
        "summary": dg.MetadataValue.md(pack.summary_markdown()),
        "closest_records": dg.MetadataValue.path(str(paths.get("closest", ""))),
        "show": f"trialsynth evidence show {run_id}",
        "metrics": dg.MetadataValue.md(md_table(
            metrics[metrics["variable"].isna()][["metric", "value", "threshold_warn", "threshold_fail", "level"]].to_dict("records"))),
    })
    yield dg.AssetCheckResult(
        check_name="evidence_passes", passed=failing.empty, severity=dg.AssetCheckSeverity.ERROR,
        description="no metric at 'fail'" if failing.empty else
        f"{len(failing)} metric(s) at 'fail': " + ", ".join(sorted(set(failing["metric"].astype(str)))),
        metadata={"failing_metrics": dg.MetadataValue.json(  # via to_json: a missing value is null, never NaN
            json.loads(failing[["metric", "variable", "value"]].head(25).to_json(orient="records"))),
                  "n_failing": len(failing),
                  "overall": pack.overall_level},
    )
