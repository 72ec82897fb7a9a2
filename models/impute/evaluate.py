"""Held-out evaluation of imputers and evidence-based choice of one, per study.

Protocol (the GAIN paper's, Yoon et al. 2018, and its reference code ``utils.rmse_loss``): hide a share
of the *observed* cells with a chosen mechanism (``models.missingness.ampute``), impute, and
compare imputed with true values on the hidden cells only. Values are put on the [0, 1] scale by the
per-column min-max of the observed data before masking, and

    RMSE = sqrt( sum over hidden cells of (imputed - true)^2 / number of hidden cells ),

one number pooled over all hidden cells (not an average of per-column RMSEs). The reference divides
by ``max - min + 1e-6``; here a constant column is divided by 1 instead, otherwise by ``max - min``.

Cells missing in the input are never hidden or scored: the hidden cells are ``ampute``'s mask
(``models.missingness.ampute.ampute_mask``), drawn among observed cells, ``rate`` of them (for MAR,
of the observed cells outside the driver columns, which ``ampute`` never masks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance

from models.impute.baselines import IMPUTER_NAMES, make_imputer
from models.missingness._validation import all_missing_columns, as_float_matrix, raise_for_columns
from models.missingness.ampute import ampute_mask

ALL_COLUMNS = "__all__"
MECHANISMS = ("MCAR", "MAR", "MNAR")


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of several imputers on the same held-out masks.

    ``scores`` has one row per (imputer, repeat, metric, column) with the ``value``; ``summary`` one row
    per (imputer, metric, column) with ``mean``, ``sd`` (ddof 1; 0 for a single repeat) and ``n`` repeats.
    ``params`` holds each imputer's constructor parameters (its ``random_state`` is drawn per repeat
    from the evaluation's ``random_state``). Metrics, all on the [0, 1] min-max scale of the observed
    data (see ``score_imputation``):

    - ``rmse`` (column ``__all__``): RMSE over all hidden cells;
    - ``wasserstein``: per column, the 1-Wasserstein distance between imputed and true hidden values;
      ``__all__`` is its mean over columns;
    - ``mean_delta`` / ``sd_delta``: per column, mean / sd of the imputed complete column minus those
      of the observed values left after masking (pre- vs post-imputation); ``__all__`` is the mean of
      their absolute values over columns;
    - ``seconds`` (``__all__``): wall time of ``fit_transform``.
    """

    scores: pd.DataFrame
    params: dict[str, dict[str, Any]]
    mechanism: str
    rate: float
    repeats: int
    random_state: int

    @property
    def summary(self) -> pd.DataFrame:
        """Tidy mean +/- sd over repeats: columns imputer, metric, column, mean, sd, n."""
        return (self.scores.groupby(["imputer", "metric", "column"], sort=False)["value"]
                .agg(mean="mean", sd=lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0, n="size")
                .reset_index())

    def table(self, metric: str = "rmse") -> pd.DataFrame:
        """Mean and sd of an overall metric per imputer (index), best (lowest mean) first."""
        rows = self.summary[(self.summary["metric"] == metric) & (self.summary["column"] == ALL_COLUMNS)]
        return rows.set_index("imputer")[["mean", "sd", "n"]].sort_values("mean")


@dataclass(frozen=True)
class Choice:
    """The imputer picked by ``select_imputer``: registry name, its parameters, mean RMSE, and why."""

    name: str
    params: dict[str, Any]
    score: float
    reason: str


def _normalise_specs(imputers: dict[str, dict[str, Any] | None] | list[str]) -> dict[str, dict[str, Any]]:
    specs = {name: {} for name in imputers} if isinstance(imputers, list | tuple) else \
        {name: dict(params or {}) for name, params in imputers.items()}
    if not specs:
        raise ValueError("imputers must name at least one imputer")
    unknown = [name for name in specs if name not in IMPUTER_NAMES]
    if unknown:
        raise ValueError(f"imputers: unknown name(s) {unknown}; choose from {', '.join(IMPUTER_NAMES)}")
    return specs


def score_imputation(true: np.ndarray, masked: np.ndarray, imputed: np.ndarray, hidden: np.ndarray,
                     labels: list[str]) -> list[tuple[str, str, float]]:
    """Score one imputation: a list of (metric, column, value); column ``__all__`` for overall values.

    All arrays are (n_samples, n_features) on the same [0, 1] scale: ``true`` the data before masking,
    ``masked`` the imputer's input (NaN where missing), ``imputed`` its output, ``hidden`` the boolean
    mask of the scored cells. Metrics as listed in ``EvaluationResult``; a column without hidden cells
    gets no Wasserstein row.
    """
    rows = [("rmse", ALL_COLUMNS, float(np.sqrt(np.mean((imputed[hidden] - true[hidden]) ** 2))))]
    w = [(label, wasserstein_distance(imputed[hidden[:, j], j], true[hidden[:, j], j]))
         for j, label in enumerate(labels) if hidden[:, j].any()]
    rows += [("wasserstein", label, float(d)) for label, d in w]
    rows.append(("wasserstein", ALL_COLUMNS, float(np.mean([d for _, d in w]))))
    for metric, pre, post in (
        ("mean_delta", np.nanmean(masked, axis=0), imputed.mean(axis=0)),
        ("sd_delta", np.nanstd(masked, axis=0, ddof=1), imputed.std(axis=0, ddof=1)),
    ):
        delta = post - pre
        rows += [(metric, label, float(d)) for label, d in zip(labels, delta, strict=True) if np.isfinite(d)]
        rows.append((metric, ALL_COLUMNS, float(np.mean(np.abs(delta[np.isfinite(delta)])))))
    return rows


def evaluate_imputers(X: np.ndarray | pd.DataFrame, imputers: dict[str, dict[str, Any] | None] | list[str],
                      mechanism: Literal["MCAR", "MAR", "MNAR"] = "MCAR", rate: float = 0.2, repeats: int = 10,
                      random_state: int = 0) -> EvaluationResult:
    """Score imputers on held-out observed cells, ``repeats`` times with fresh masks.

    Parameters
    ----------
    X : array or DataFrame, shape (n_samples, n_features)
        Numeric data; NaN cells are treated as missing and never scored.
    imputers : list of registry names, or dict name -> constructor parameters (None for defaults).
        Names from ``models.impute.baselines.IMPUTER_NAMES``.
    mechanism : "MCAR", "MAR" or "MNAR", passed to ``ampute_mask`` (its default strength and drivers).
    rate : float in (0, 1), share of observed cells hidden in each repeat.
    repeats : int >= 1; every imputer sees the same masks (paired comparison).
    random_state : int, seeds the masks and the imputers (the same seed gives the same masks).

    Returns
    -------
    EvaluationResult (see its docstring for the metrics).
    """
    specs = _normalise_specs(imputers)
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    if not isinstance(repeats, int | np.integer) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    values, labels = as_float_matrix(X)
    raise_for_columns(labels, all_missing_columns(values),
                      "X: column(s) {columns} have no observed value; drop them before evaluation")
    low = np.nanmin(values, axis=0)
    span = np.nanmax(values, axis=0) - low
    span[span == 0] = 1.0
    true = (values - low) / span
    seeds = np.random.default_rng(random_state).integers(np.iinfo(np.int32).max, size=(repeats, 2))
    records = []
    for r, (mask_seed, imputer_seed) in enumerate(seeds):
        hidden = ampute_mask(values, mechanism, rate, random_state=int(mask_seed))
        if not hidden.any():
            raise ValueError(f"repeat {r}: {mechanism} masking at rate {rate} hid no observed cell; raise rate")
        masked = np.where(hidden, np.nan, values)
        raise_for_columns(labels, all_missing_columns(masked),
                          f"repeat {r}: {mechanism} masking at rate {rate} left column(s) {{columns}} with no "
                          "observed value; lower the rate or provide more rows")
        for name, params in specs.items():
            imputer = make_imputer(name, random_state=int(imputer_seed), **params)
            started = time.perf_counter()
            imputed = imputer.fit_transform(masked)
            seconds = time.perf_counter() - started
            rows = score_imputation(true, (masked - low) / span, (imputed - low) / span, hidden, labels)
            rows.append(("seconds", ALL_COLUMNS, seconds))
            records += [(name, r, metric, column, value) for metric, column, value in rows]
    scores = pd.DataFrame.from_records(records, columns=["imputer", "repeat", "metric", "column", "value"])
    return EvaluationResult(scores=scores, params=specs, mechanism=mechanism, rate=rate,
                            repeats=repeats, random_state=random_state)


def select_imputer(result: EvaluationResult, tol: float = 1e-4) -> Choice:
    """Pick the imputer with the lowest mean held-out RMSE and say why.

    Means within ``tol`` of the best count as tied; a tie goes to the lower sd across repeats (again
    within ``tol``), then to the faster imputer (mean ``fit_transform`` seconds).
    """
    rmse = result.table("rmse")
    speed = result.table("seconds")["mean"]
    best = rmse["mean"].min()
    tied = rmse[rmse["mean"] <= best + tol]
    tied = tied[tied["sd"] <= tied["sd"].min() + tol]
    name = str(speed.loc[tied.index].idxmin())
    won = rmse.loc[name]
    setting = f"{result.repeats} repeat{'s' * (result.repeats != 1)} of {result.rate:.0%} {result.mechanism}"
    reason = f"{name}: RMSE {won['mean']:.4f} +/- {won['sd']:.4f}"
    others = rmse.drop(index=name)
    if others.empty:
        reason += f" on {setting} (the only imputer evaluated)"
    else:
        reason += (f" vs next best {others.index[0]} {others['mean'].iloc[0]:.4f} +/- {others['sd'].iloc[0]:.4f} "
                   f"on {setting}")
    tied_with = [str(i) for i in others.index[others["mean"] <= best + tol]]
    if tied_with:
        reason += (f"; tied within {tol:g} with {', '.join(tied_with)}, decided by lower sd, then speed "
                   f"({speed[name]:.2f} s per imputation)")
    return Choice(name=name, params=dict(result.params[name]), score=float(won["mean"]), reason=reason)
