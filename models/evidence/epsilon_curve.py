"""What a privacy budget costs: fidelity, utility and membership-inference AUC of the DP synthesizers
against epsilon, next to a synthesizer without a guarantee ("none").

The evidence pack carries this curve when the study config asks for it (``evidence.epsilon_curve``):
each point fits a fresh DP synthesizer on the training rows at that epsilon, samples as many rows as
were trained on, and scores them against the training rows and the real holdout the way the pack
scores its cohort (utility without a bootstrap interval). The curve's models are discarded, never
released nor recorded against the study's privacy cap; its numbers, like the rest of the pack, are
computed on the real rows and are not differentially private.

>>> curve = epsilon_curve(train, holdout, ["ARM", "SEX"], target="ARM", columns=study_domain)
>>> [(p["mechanism"], p["epsilon"], p["detection_auc"]) for p in curve["points"]]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from models.evidence.encoding import clean_frame, split_columns
from models.evidence.metrics import detection_auc, fidelity_metrics, utility_scores
from models.evidence.privacy import privacy_metrics

CURVE_EPSILONS = (0.5, 1.0, 2.0, 5.0, 10.0)
CURVE_MECHANISMS = ("dp_copula", "mst")
NO_DP = "copula (no DP)"
"""Label of the point without a guarantee: the Gaussian copula of :mod:`models.synth.copula`."""
CURVE_METRICS = ("correlation_delta_mean", "detection_auc", "utility_ratio", "mia_auc", "wasserstein_mean")
LOWER_IS_BETTER = {"correlation_delta_mean": True, "detection_auc": True, "utility_ratio": False,
                   "mia_auc": True, "wasserstein_mean": True}
CURVE_STATEMENT = (
    "each point is a fresh synthesizer fitted on the training rows at that epsilon (delta as stated), "
    "sampled to as many rows as the training set and scored against the training rows and the real holdout "
    "as this pack scores its cohort (utility: the point value, no interval); single fits: differences below "
    "about 0.05 are the mechanisms' noise. These models are discarded: they are never released and spend "
    "nothing of the study's privacy cap, but the curve, like this whole pack, is computed on the real rows "
    "and is not differentially private"
)


def nice_bounds(values: pd.Series) -> list[float]:
    """The observed range of ``values`` rounded outward to two significant digits of its width."""
    lo, hi = float(values.min()), float(values.max())
    step = 10.0 ** (math.floor(math.log10(hi - lo)) - 1) if hi > lo else 1.0
    return [math.floor(lo / step) * step, math.ceil(hi / step) * step]


def standin_domain(train: pd.DataFrame, categorical: Sequence[str],
                   columns: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[dict[str, dict], list[str]]:
    """Column -> public spec for the DP synthesizers: the fields ``columns`` gives (study config,
    protocol), and for a column they leave incomplete a stand-in read off ``train`` (NOT private):
    the categories seen, or the range rounded outward (:func:`nice_bounds`) with the recorded
    precision. Returns the domain and the columns that got a stand-in. A real DP training never reads
    these off the data (it takes them from the config or spends budget on an estimate), so a curve on
    stand-ins is optimistic for those columns."""
    from models.synth import TableSchema

    given = {name: {k: v for k, v in spec.items() if v is not None} for name, spec in (columns or {}).items()}
    domain, read_off = {}, []
    for name in train.columns:
        spec = dict(given.get(name, {}))
        if name in categorical or spec.get("kind") in ("categorical", "ordinal"):
            if spec.get("categories") is None:
                spec["categories"] = sorted(train[name].dropna().unique().tolist(), key=str)
                read_off.append(name)
        elif spec.get("min_value") is None or spec.get("max_value") is None:
            inferred = TableSchema.infer(train[[name]]).columns[0]
            lo, hi = nice_bounds(train[name])
            spec = {"kind": inferred.kind, "min_value": lo, "max_value": hi,
                    **({"decimals": inferred.decimals} if inferred.decimals is not None else {}), **spec}
            read_off.append(name)
        domain[name] = spec
    return domain, read_off


def score_synthetic(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame,
                    categorical: Sequence[str], target: str | None, random_state: int | None = 0,
                    max_rows: int | None = 20_000, n_threads: int | None = 1) -> dict[str, float]:
    """The curve's scores of one synthetic table (same columns as ``train``; all frames as the pack
    takes them): ``correlation_delta_mean``, ``detection_auc``, ``utility_ratio`` (train on synthetic /
    train on real, predicting ``target`` on the holdout; NaN without a target), ``mia_auc`` and
    ``wasserstein_mean`` (mean of the per-numeric-column IQR-scaled distances), each as
    :func:`~models.evidence.pack.build_evidence_pack` computes it with the same ``random_state``
    (NaN where the data is too small for it, e.g. a utility class held by one synthetic row). Columns the synthesizer returned all missing are left out (``columns_all_missing`` counts them).
    ``n_threads``: OpenMP/BLAS threads of the classifiers (1, as in the pack: on a busy machine more
    threads made each scoring minutes long instead of seconds)."""
    with threadpool_limits(n_threads):
        return _score(train, synthetic, holdout, categorical, target, random_state, max_rows)


def _score(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, categorical: Sequence[str],
           target: str | None, random_state: int | None, max_rows: int | None) -> dict[str, float]:
    empty = [c for c in train.columns if synthetic[c].isna().all()]
    keep = [c for c in train.columns if c not in empty]
    cat, num = split_columns({"train": train[keep], "synthetic": synthetic[keep], "holdout": holdout[keep]},
                             [c for c in categorical if c in keep])
    real, synth, hold = (clean_frame(df[keep], cat, num) for df in (train, synthetic, holdout))
    fidelity = fidelity_metrics(real, synth, cat, num)
    by_name = {v.metric: v.value for v in fidelity if v.variable is None}
    wasserstein = [v.value for v in fidelity if v.metric == "wasserstein"]
    utility = detection = float("nan")  # NaN, as in the pack, where the data is too small for the metric
    if target is not None and target in keep:
        with suppress(ValueError):  # e.g. a class held by one synthetic row: no stratified early-stopping split
            utility = float(utility_scores(real, synth, hold, target, cat, random_state=random_state,
                                           n_bootstrap=0)["ratio"])
    with suppress(ValueError):
        detection = float(detection_auc(real, synth, cat, max_rows=max_rows, random_state=random_state)["auc"])
    privacy = privacy_metrics(real, synth, hold, cat, num, max_rows=max_rows, random_state=random_state)
    return {
        "correlation_delta_mean": float(by_name.get("correlation_delta_mean", float("nan"))),
        "detection_auc": detection,
        "utility_ratio": utility,
        "mia_auc": privacy.mia_auc,
        "wasserstein_mean": float(np.mean(wasserstein)) if wasserstein else float("nan"),
        "columns_all_missing": len(empty),
    }


def epsilon_curve(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    categorical: Sequence[str],
    *,
    target: str | None = None,
    columns: Mapping[str, Mapping[str, Any]] | None = None,
    epsilons: Sequence[float] = CURVE_EPSILONS,
    delta: float = 1e-6,
    mechanisms: Sequence[str] = CURVE_MECHANISMS,
    random_state: int | None = 0,
    max_rows: int | None = 20_000,
    n_threads: int | None = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit every DP ``mechanism`` (names of :data:`models.synth.dp.MECHANISMS`) at every epsilon
    (delta fixed) and the Gaussian copula without a guarantee on ``train`` (n_train, n_columns),
    sample n_train rows from each and score them (:func:`score_synthetic`) against ``train`` and
    ``holdout`` (real rows never trained on, same columns). ``columns``: the public domain
    (:func:`standin_domain` fills the rest from the data and says which). Fit and sample seeded by
    ``random_state``; ``n_threads`` as in :func:`score_synthetic`; ``progress`` gets one line per point. Cost: one fit and one scoring per point,
    (len(mechanisms) x len(epsilons) + 1) in all.

    Returns a JSON-ready dict: epsilons, delta, mechanisms, target, rows {train, holdout}, domain
    {public, read_off_training_data}, statement, and points: one dict per (mechanism, epsilon)
    (``epsilon`` None for the point without a guarantee) with the scores, ``fit_seconds`` and
    ``columns_all_missing``.
    """
    from models.synth import GaussianCopulaSynthesizer
    from models.synth.dp import MECHANISMS

    unknown = [m for m in mechanisms if m not in MECHANISMS]
    if unknown or not mechanisms:
        raise ValueError(f"mechanisms must name DP synthesizers among {sorted(MECHANISMS)}, got {list(mechanisms)}")
    if not epsilons or any(not (isinstance(e, int | float) and 0 < e <= 100) for e in epsilons):
        raise ValueError(f"epsilons must be numbers in (0, 100], got {list(epsilons)}")
    if target is not None and target not in train.columns:
        raise ValueError(f"target {target!r} is not a column of train")
    split_columns({"train": train, "holdout": holdout}, categorical)
    domain, read_off = standin_domain(train, categorical, columns)
    say = progress or (lambda _line: None)
    fits: list[tuple[str, float | None, Any]] = [
        (name, float(eps), lambda eps=eps, cls=MECHANISMS[name]: cls(epsilon=eps, delta=delta, columns=domain,
                                                                      random_state=random_state))
        for name in mechanisms for eps in sorted(epsilons)]
    fits.append((NO_DP, None, lambda: GaussianCopulaSynthesizer(random_state=random_state)))
    points = []
    for name, eps, make in fits:
        started = time.perf_counter()
        model = make().fit(train)
        seconds = time.perf_counter() - started
        synthetic = model.sample(len(train), random_state=random_state)[list(train.columns)]
        scores = score_synthetic(train, synthetic, holdout, categorical, target, random_state, max_rows, n_threads)
        points.append({"mechanism": name, "epsilon": eps, **scores, "fit_seconds": seconds})
        say(f"epsilon curve: {name} at epsilon={'none' if eps is None else f'{eps:g}'}: "
            + ", ".join(f"{m}={scores[m]:.3f}" for m in CURVE_METRICS))
    return {
        "epsilons": sorted(float(e) for e in epsilons), "delta": delta, "mechanisms": list(mechanisms),
        "no_dp": NO_DP, "target": target, "rows": {"train": len(train), "holdout": len(holdout)},
        "random_state": random_state,
        "domain": {"public": [c for c in train.columns if c not in read_off], "read_off_training_data": read_off},
        "statement": CURVE_STATEMENT, "points": points,
    }


def curve_rows(curve: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The curve as a table (header, rows): one row per metric and mechanism, one column per epsilon
    and a last column "none" (the synthesizer without a guarantee, the same on every row of a metric)."""
    epsilons = curve["epsilons"]
    none = next((p for p in curve["points"] if p["epsilon"] is None), {})
    header = ["metric", "mechanism", *(f"epsilon={e:g}" for e in epsilons), f"none ({curve.get('no_dp', NO_DP)})"]
    rows = []
    for metric in CURVE_METRICS:
        for mechanism in curve["mechanisms"]:
            at = {p["epsilon"]: p.get(metric) for p in curve["points"] if p["mechanism"] == mechanism}
            rows.append([metric, mechanism, *(_fmt(at.get(e)) for e in epsilons), _fmt(none.get(metric))])
    return header, rows


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
