"""Fidelity and utility metrics: how closely synthetic rows follow the real data.

All functions take *clean* frames or columns (see :func:`models.evidence.encoding.clean_frame`):
numeric columns as float64 with NaN for missing, categorical columns as strings. Missing numeric
values are left out of the per-column distances; for categoricals "missing" is a category.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score, root_mean_squared_error
from sklearn.model_selection import StratifiedKFold, cross_val_score

from models.evidence.encoding import MISSING, model_frames, subsample


class MetricValue(NamedTuple):
    """One measured value: ``variable`` is a column, ``"A|B"`` for a pair, or None for the table.

    ``low`` / ``high``: a confidence interval of the value when one is known (NaN otherwise); the
    metric is then graded on the interval (:meth:`~models.evidence.thresholds.Threshold.level_of_interval`).
    """

    metric: str
    variable: str | None
    value: float
    low: float = float("nan")
    high: float = float("nan")


def _observed(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype="float64")[~values.isna().to_numpy()]


def scale_of(real: pd.Series) -> float:
    """Scale that makes a numeric column's distances unit-free: its interquartile range (robust to
    the outliers lab values have), its range when the IQR is 0, and 1 for a constant column."""
    x = _observed(real)
    q25, q75 = np.percentile(x, [25, 75])
    for scale in (q75 - q25, x.max() - x.min()):
        if scale > 0:
            return float(scale)
    return 1.0


def wasserstein_scaled(real: pd.Series, synthetic: pd.Series) -> float:
    """Wasserstein-1 distance between the observed values of two numeric columns, in units of
    :func:`scale_of` the real column (0 = same distribution). NaN when either has no values."""
    x, y = _observed(real), _observed(synthetic)
    if len(x) == 0 or len(y) == 0:
        return float("nan")
    return float(stats.wasserstein_distance(x, y) / scale_of(real))


def ks_statistic(real: pd.Series, synthetic: pd.Series) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (max CDF gap, in [0, 1]) of the observed values."""
    x, y = _observed(real), _observed(synthetic)
    if len(x) == 0 or len(y) == 0:
        return float("nan")
    return float(stats.ks_2samp(x, y).statistic)


def tv_complement(real: pd.Series | pd.DataFrame, synthetic: pd.Series | pd.DataFrame) -> float:
    """1 - total variation distance between the category frequencies of ``real`` and ``synthetic``
    (1 = identical frequencies, 0 = disjoint support). Given DataFrames, the categories are the
    rows' value combinations, i.e. the joint distribution of the columns."""
    p = real.value_counts(normalize=True)
    q = synthetic.value_counts(normalize=True)
    p, q = p.align(q, fill_value=0.0)
    return float(1.0 - 0.5 * np.abs(p.to_numpy() - q.to_numpy()).sum())


def correlation_matrix(df: pd.DataFrame, numeric: Sequence[str]) -> pd.DataFrame:
    """Pearson correlations of the numeric columns (pairwise-complete observations); pairs that
    involve a constant column have no correlation and count as 0."""
    return df[list(numeric)].corr(method="pearson").fillna(0.0)


def correlation_delta(
    real: pd.DataFrame, synthetic: pd.DataFrame, numeric: Sequence[str]
) -> tuple[float, float]:
    """(mean, max) over distinct numeric column pairs of |r_real - r_synthetic| (Pearson).

    NaN for both when there are fewer than two numeric columns.
    """
    if len(numeric) < 2:
        return float("nan"), float("nan")
    delta = np.abs(
        correlation_matrix(real, numeric).to_numpy() - correlation_matrix(synthetic, numeric).to_numpy()
    )
    upper = delta[np.triu_indices(len(numeric), k=1)]
    return float(upper.mean()), float(upper.max())


def fidelity_metrics(
    real: pd.DataFrame, synthetic: pd.DataFrame, categorical: Sequence[str], numeric: Sequence[str]
) -> list[MetricValue]:
    """Per-column, pairwise and correlation metrics of ``synthetic`` against ``real`` (clean frames).

    Returns ``wasserstein``, ``ks_statistic`` and ``ks_complement`` per numeric column,
    ``tv_complement`` per categorical column, ``contingency_similarity`` per categorical pair, and
    ``correlation_delta_mean`` / ``_max`` when there are at least two numeric columns.
    """
    rows: list[MetricValue] = []
    for col in numeric:
        ks = ks_statistic(real[col], synthetic[col])
        rows += [
            MetricValue("wasserstein", col, wasserstein_scaled(real[col], synthetic[col])),
            MetricValue("ks_statistic", col, ks),
            MetricValue("ks_complement", col, 1.0 - ks),
        ]
    rows += [
        MetricValue("tv_complement", col, tv_complement(real[col], synthetic[col])) for col in categorical
    ]
    rows += [
        MetricValue("contingency_similarity", f"{a}|{b}", tv_complement(real[[a, b]], synthetic[[a, b]]))
        for a, b in combinations(categorical, 2)
    ]
    if len(numeric) >= 2:
        mean, worst = correlation_delta(real, synthetic, numeric)
        rows += [
            MetricValue("correlation_delta_mean", None, mean),
            MetricValue("correlation_delta_max", None, worst),
        ]
    return rows


def _boosting(
    estimator: type[HistGradientBoostingClassifier | HistGradientBoostingRegressor],
    n_rows: int,
    random_state: int | None,
) -> HistGradientBoostingClassifier | HistGradientBoostingRegressor:
    """Gradient boosting with early stopping on a 10 % validation split from 200 training rows on
    (sklearn's default starts at 10 000): 3-4x faster here, and it stops overfitting data that
    carries no signal. Below 200 rows the split would be too small to be stratified."""
    return estimator(
        categorical_features="from_dtype", early_stopping=n_rows >= 200, random_state=random_state
    )


def detection_auc(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    categorical: Sequence[str],
    *,
    n_splits: int = 5,
    max_rows: int | None = 20_000,
    random_state: int | None = 0,
) -> dict[str, float]:
    """How well a classifier tells real from synthetic rows (clean frames).

    A HistGradientBoosting classifier is cross-validated (stratified ``n_splits`` folds) on real
    (label 1) vs synthetic (label 0) rows, each subsampled to at most ``max_rows``. Returns
    ``{"auc": ..., "raw_auc": ...}``: ``raw_auc`` is the mean out-of-fold ROC AUC and ``auc`` is it
    clipped below at 0.5, since an AUC under 0.5 only arises from fold noise (e.g. when the
    synthetic rows duplicate real ones, the copy in the training fold makes the classifier
    mislabel its twin) and means the same as 0.5: indistinguishable.
    """
    rng = np.random.default_rng(random_state)
    real_s, synth_s = subsample(real, max_rows, rng), subsample(synthetic, max_rows, rng)
    if min(len(real_s), len(synth_s)) < n_splits:
        raise ValueError(f"detection needs at least n_splits={n_splits} real and synthetic rows")
    x_real, x_synth = model_frames([real_s, synth_s], categorical)
    x = pd.concat([x_real, x_synth], ignore_index=True)
    y = np.r_[np.ones(len(x_real)), np.zeros(len(x_synth))]
    clf = _boosting(HistGradientBoostingClassifier, len(x) * (n_splits - 1) // n_splits, random_state)
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    raw = float(cross_val_score(clf, x, y, cv=cv, scoring="roc_auc").mean())
    return {"auc": max(raw, 0.5), "raw_auc": raw}


def _macro_ovr_auc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    # Hand-written one-vs-rest macro AUC: sklearn's multi_class="ovr" rejects score columns for
    # classes absent from y_true, which happens when the synthetic data invents or drops a class.
    scores = [
        roc_auc_score(
            y_true == c, proba[:, list(classes).index(c)] if c in classes else np.zeros(len(y_true))
        )
        for c in np.unique(y_true)
    ]
    return float(np.mean(scores))


def _predict(x: pd.DataFrame, y: np.ndarray, x_hold: pd.DataFrame, is_cat: bool, random_state: int | None
             ) -> _Predicted:
    """Fit the utility model on (x, y) (a prior-only classifier when y has one class) and predict the holdout."""
    if is_cat and len(np.unique(y)) < 2:
        model = DummyClassifier(strategy="prior").fit(x, y)
    else:
        model = _boosting(HistGradientBoostingClassifier if is_cat else HistGradientBoostingRegressor, len(y),
                          random_state).fit(x, y)
    if is_cat:
        return _Predicted(model.predict_proba(x_hold), model.classes_)
    return _Predicted(model.predict(x_hold), None)


class _Predicted(NamedTuple):
    """A utility model's holdout predictions: class probabilities and classes, or values (classes None)."""

    values: np.ndarray
    classes: np.ndarray | None

    def score(self, y_hold: np.ndarray, rows: np.ndarray | slice = slice(None)) -> dict[str, float]:
        """AUC and accuracy, or R2 and RMSE, over the holdout ``rows``."""
        if self.classes is None:
            pred = self.values[rows]
            return {"r2": float(r2_score(y_hold, pred)), "rmse": float(root_mean_squared_error(y_hold, pred))}
        proba = self.values[rows]
        return {"auc": _macro_ovr_auc(y_hold, proba, self.classes),
                "accuracy": float(accuracy_score(y_hold, self.classes[proba.argmax(axis=1)]))}


def _ratio(real: dict[str, float], synthetic: dict[str, float]) -> float:
    """AUC(synthetic) / AUC(real), or RMSE(real) / RMSE(synthetic)."""
    if "auc" in real:
        return synthetic["auc"] / real["auc"]
    return real["rmse"] / synthetic["rmse"] if synthetic["rmse"] > 0 else 1.0


def utility_scores(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    target: str,
    categorical: Sequence[str],
    *,
    random_state: int | None = 0,
    n_bootstrap: int = 30,
    confidence: float = 0.95,
) -> dict[str, float | str | int]:
    """Train-on-synthetic vs train-on-real, both tested on the real holdout (clean frames).

    A HistGradientBoosting model predicts ``target`` from all other columns. For a categorical
    target: ROC AUC (one-vs-rest macro average over the holdout's classes) and accuracy, ratio =
    AUC(synthetic) / AUC(real). For a numeric target: R2 and RMSE, ratio = RMSE(real) /
    RMSE(synthetic). A ratio of 1 means the synthetic data is as useful as the real data. Rows with
    a missing target are dropped.

    ``ratio_low`` / ``ratio_high``: a normal bootstrap interval (``confidence``; ratio -/+ z x the
    standard deviation of ``n_bootstrap`` replicate ratios, steadier than percentiles at a few dozen
    replicates). Each replicate resamples the synthetic rows (refitting the synthetic model) and the
    holdout rows (rescoring both models) with replacement: it covers the noise of the synthetic
    sample, which alone moved the ratio from 0.63 to 1.02 across sampling seeds of one fitted
    synthesizer, and of the test set (a holdout of 50 rows moves an AUC by about 0.1). The real
    training rows are the fixed reference and are not resampled. Replicates whose holdout lacks a
    second class are redrawn. ``n_bootstrap=0``: no interval (NaN).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    is_cat = target in categorical
    present = [
        df[df[target] != MISSING] if is_cat else df[df[target].notna()] for df in (train, synthetic, holdout)
    ]
    for name, df in zip(("real", "synthetic", "holdout"), present, strict=True):
        if len(df) < 2:
            raise ValueError(f"utility needs at least 2 rows of {name} with a value of target {target!r}")
    if is_cat and present[2][target].nunique() < 2:
        raise ValueError(f"utility needs at least 2 classes of target {target!r} in the holdout")
    features = [c for c in train.columns if c != target]
    x_real, x_synth, x_hold = model_frames([df[features] for df in present], [c for c in categorical if c != target])
    y_real, y_synth, y_hold = (df[target].to_numpy() for df in present)
    real_pred = _predict(x_real, y_real, x_hold, is_cat, random_state)
    real, synth = real_pred.score(y_hold), _predict(x_synth, y_synth, x_hold, is_cat, random_state).score(y_hold)
    scores: dict[str, float | str | int] = {"target": target, "task": "classification" if is_cat else "regression"}
    scores.update({f"{k}_real": v for k, v in real.items()})
    scores.update({f"{k}_synthetic": v for k, v in synth.items()})
    scores["ratio"] = _ratio(real, synth)
    rng = np.random.default_rng(random_state)
    ratios: list[float] = []
    while len(ratios) < n_bootstrap:
        hold = rng.integers(0, len(y_hold), len(y_hold))
        if is_cat and len(np.unique(y_hold[hold])) < 2:
            continue
        synth_rows = rng.integers(0, len(y_synth), len(y_synth))
        replicate = _predict(x_synth.iloc[synth_rows], y_synth[synth_rows], x_hold, is_cat, random_state)
        ratios.append(_ratio(real_pred.score(y_hold[hold], hold), replicate.score(y_hold[hold], hold)))
    half = float(stats.norm.ppf(0.5 + confidence / 2) * np.std(ratios, ddof=1)) if n_bootstrap > 1 else np.nan
    scores.update({"ratio_low": scores["ratio"] - half, "ratio_high": scores["ratio"] + half,
                   "n_bootstrap": n_bootstrap, "confidence": confidence})
    return scores


RANDOMIZED_COLUMNS = ("ARM", "ARMCD", "ACTARM", "ACTARMCD", "ARMNRS")
"""Columns left out of the automatic utility target: randomized, hence independent of every baseline
column by design (predicting them measures noise: a real-data AUC near 0.5)."""
MIN_TARGET_SIGNAL = 0.2
"""Least real-data signal for an automatic utility target: 2 AUC - 1 (categorical) or R2 (numeric)."""


def _screen_score(x: pd.DataFrame, y: np.ndarray, is_cat: bool, random_state: int | None) -> float:
    """Mean 3-fold CV score of a small boosting model: macro one-vs-rest AUC or R2."""
    if not is_cat:
        model = HistGradientBoostingRegressor(max_iter=25, categorical_features="from_dtype",
                                              random_state=random_state)
        return float(np.mean(cross_val_score(model, x, y, cv=3, scoring="r2")))
    # by hand: a rare class absent from a training fold breaks sklearn's "roc_auc_ovr" scorer
    scores = []
    with warnings.catch_warnings():  # a class with 1-2 members cannot be in every fold: expected here
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        folds = list(StratifiedKFold(3, shuffle=True, random_state=random_state).split(x, y))
    for fit, test in folds:
        model = HistGradientBoostingClassifier(max_iter=25, categorical_features="from_dtype",
                                               random_state=random_state).fit(x.iloc[fit], y[fit])
        scores.append(_macro_ovr_auc(y[test], model.predict_proba(x.iloc[test]), model.classes_))
    return float(np.mean(scores))


class TargetChoice(NamedTuple):
    """Utility targets and why: ``screen`` has one row per column considered (column, task, score,
    signal, note), best first."""

    targets: list[str]
    reason: str
    screen: pd.DataFrame


def choose_utility_targets(
    real: pd.DataFrame,
    categorical: Sequence[str],
    *,
    max_targets: int = 1,
    exclude: Sequence[str] = RANDOMIZED_COLUMNS,
    random_state: int | None = 0,
) -> TargetChoice:
    """The columns of ``real`` (a clean frame) that the other columns predict best: utility targets
    that carry signal.

    Each column is screened by 3-fold cross-validation of a small gradient-boosting model (25
    iterations, a screen: cheap rather than tuned) on the real rows: ROC AUC for a categorical column (2-20 classes, at least 10 rows in
    its second-largest class), R2 for a numeric one (at least 10 distinct values, observed in half the
    rows). Signal is 2 AUC - 1 or R2, both 0 for no signal and 1 for perfect prediction; the
    ``max_targets`` columns with the most signal, at least :data:`MIN_TARGET_SIGNAL`, are chosen.
    Columns in ``exclude`` (the randomized arm) are not considered.
    """
    rows, skipped = [], [c for c in real.columns if c in set(exclude)]
    for col in real.columns:
        if col in skipped:
            continue
        is_cat = col in categorical
        values = real[col]
        if is_cat:
            counts = values[values != MISSING].value_counts()
            usable = 2 <= len(counts) <= 20 and counts.iloc[1] >= 10
        else:
            usable = values.nunique() >= 10 and values.notna().mean() >= 0.5
        if not usable:
            continue
        keep = (values != MISSING) if is_cat else values.notna()
        features = [c for c in real.columns if c != col]
        (x,) = model_frames([real.loc[keep, features]], [c for c in categorical if c != col])
        y = values[keep].to_numpy()
        score = _screen_score(x, y, is_cat, random_state)
        signal = 2 * score - 1 if is_cat else score
        rows.append({"column": col, "task": "classification" if is_cat else "regression",
                     "score": score, "signal": signal, "note": "AUC" if is_cat else "R2"})
    screen = pd.DataFrame(rows, columns=["column", "task", "score", "signal", "note"])
    screen = screen.sort_values("signal", ascending=False, kind="stable", ignore_index=True)
    chosen = screen[screen["signal"] >= MIN_TARGET_SIGNAL].head(max_targets)
    left_out = f"; left out as randomized (independent of baseline by design): {', '.join(skipped)}" if skipped else ""
    if chosen.empty:
        best = (f"; best was {screen['column'].iloc[0]} with signal {screen['signal'].iloc[0]:.2f}"
                if len(screen) else "")
        reason = (f"no column carries signal: none of {len(screen)} candidate column(s) reaches "
                  f"{MIN_TARGET_SIGNAL:g} (2 AUC - 1 or R2, 3-fold CV on the real rows){best}{left_out}")
        return TargetChoice([], reason, screen)
    parts = [f"{r.column} ({r.note} {r.score:.2f} predicting it from the other columns, 3-fold CV on the real rows)"
             for r in chosen.itertuples()]
    reason = (f"chosen from the data: {', '.join(parts)}; the most predictable of {len(screen)} candidate "
              f"column(s){left_out}")
    return TargetChoice(list(chosen["column"]), reason, screen)
