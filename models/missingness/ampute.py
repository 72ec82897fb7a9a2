"""Amputation: make observed cells missing under a chosen mechanism, at a target rate, seeded.

Mechanisms (Rubin's taxonomy), each a logistic model for the probability that an eligible cell of
column j goes missing, ``P(M_ij = 1) = sigmoid(eta_ij + b_j)``:

* ``"MCAR"``: eta = 0, the same probability for every eligible cell (independent of all values).
* ``"MAR"``:  eta_ij = strength * (z_i . w_j), a random direction w_j (unit variance of eta) over
  the standardized *driver columns* z, which are never masked; given the drivers, missingness does
  not depend on the value itself.
* ``"MNAR"``: eta_ij = strength * z_ij, the cell's own standardized value (self-masking: with
  strength > 0 the larger values of a column go missing more often, with strength < 0 the smaller).

The model is realised in its latent form, ``M_ij = 1{eta_ij + b_j + e_ij > 0}`` with e_ij standard
logistic noise, and the intercept b_j is the in-sample root of "number of masked cells of column
j = rate * eligible cells of j" (rounded so that the column counts add up to round(rate * all
eligible cells); the root is an order statistic of eta + e, so no numerical root finder is needed). Solving the intercept on the realised sample instead of the expected rate makes
the achieved rate exact up to rounding at any sample size; a Bernoulli draw with the expected-rate
intercept would miss a +/-1 point target on small data. MCAR masks exactly
round(rate * eligible cells) cells drawn uniformly over the whole matrix.

Eligible cells: observed cells (already-missing cells stay missing and are not counted) of the
columns that may be masked (``columns``, minus the drivers for MAR).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from models.missingness._validation import (
    all_missing_columns,
    as_float_matrix,
    constant_columns,
    raise_for_columns,
)

Mechanism = Literal["MCAR", "MAR", "MNAR"]
ColumnSpec = Sequence[int] | Sequence[str] | None


def _column_indices(spec: ColumnSpec, labels: list[str], X: object, name: str) -> np.ndarray:
    if spec is None:
        return np.arange(len(labels))
    names = [str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else None
    out = []
    for c in spec:
        if isinstance(c, str | np.str_):
            if names is None or str(c) not in names:
                raise ValueError(f"{name}: unknown column {c!r}")
            out.append(names.index(str(c)))
        elif isinstance(c, int | np.integer) and 0 <= int(c) < len(labels):
            out.append(int(c))
        else:
            raise ValueError(f"{name}: column {c!r} is out of range for {len(labels)} columns")
    return np.unique(np.asarray(out, dtype=int))


def _standardize(values: np.ndarray) -> np.ndarray:
    """(x - mean) / sd per column over observed cells; missing cells become 0 (the mean).

    Callers have rejected constant columns; an all-missing column gives all zeros.
    """
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        z = (values - np.nanmean(values, axis=0)) / np.nanstd(values, axis=0)
    return np.where(np.isnan(z), 0.0, z)


def _quotas(n_eligible: np.ndarray, rate: float) -> np.ndarray:
    """Cells to mask per column: proportional to its eligible cells, summing to round(rate * total).

    Largest-remainder rounding, so the overall achieved rate is exact up to 1 / (2 * total).
    """
    exact = rate * n_eligible
    quota = np.floor(exact).astype(int)
    short = round(rate * int(n_eligible.sum())) - int(quota.sum())
    quota[np.argsort(quota - exact, kind="stable")[:short]] += 1
    return quota


def _mask_top(eta: np.ndarray, eligible: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Per column, mask its quota of eligible cells with the largest eta + logistic noise."""
    score = np.where(eligible, eta + rng.logistic(size=eta.shape), -np.inf)
    mask = np.zeros(eta.shape, dtype=bool)
    for j, m in enumerate(_quotas(eligible.sum(axis=0), rate)):
        if m:
            mask[np.argpartition(-score[:, j], m - 1)[:m], j] = True
    return mask


def ampute_mask(
    X: np.ndarray | pd.DataFrame,
    mechanism: Mechanism,
    rate: float,
    random_state: int | np.random.Generator | None = None,
    *,
    driver_columns: ColumnSpec = None,
    columns: ColumnSpec = None,
    strength: float = 2.0,
    driver_share: float = 0.3,
) -> np.ndarray:
    """Boolean mask (n_rows, n_columns) of the cells that amputation would make missing.

    Parameters
    ----------
    X : array or DataFrame (n_rows, n_columns), numeric; NaN marks cells already missing.
    mechanism : "MCAR", "MAR" or "MNAR" (see module docstring).
    rate : float in [0, 1)
        Share of eligible cells to mask (see module docstring for "eligible").
    random_state : int, Generator or None
        Seed; the same seed gives the same mask.
    driver_columns : column indices or names, MAR only
        Columns that drive missingness and are never masked. Default: a random
        ``driver_share`` of the columns (at least one, leaving at least one to mask).
    columns : column indices or names
        Columns that may be masked (default: all; for MAR, all but the drivers).
    strength : float
        Logistic slope on the standardized driver score (MAR) or own value (MNAR); the sign
        sets the direction for MNAR. Ignored for MCAR.
    driver_share : float in (0, 1)
        Share of columns drawn as drivers when ``driver_columns`` is None (MAR).

    Returns
    -------
    mask : bool ndarray, True for the newly missing cells (never a cell already missing).
    """
    values, labels = as_float_matrix(X, "X")
    mech = str(mechanism).upper()
    if mech not in ("MCAR", "MAR", "MNAR"):
        raise ValueError(f"mechanism must be 'MCAR', 'MAR' or 'MNAR', got {mechanism!r}")
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate!r}")
    rng = np.random.default_rng(random_state)
    targets = _column_indices(columns, labels, X, "columns")
    eta = np.zeros(values.shape)
    if mech == "MAR":
        if driver_columns is None:
            if not 0.0 < driver_share < 1.0:
                raise ValueError(f"driver_share must be in (0, 1), got {driver_share!r}")
            if values.shape[1] < 2:
                raise ValueError("MAR amputation needs at least two columns (a driver and a target)")
            n_drivers = min(max(1, round(driver_share * values.shape[1])), values.shape[1] - 1)
            drivers = np.sort(rng.choice(values.shape[1], n_drivers, replace=False))
        else:
            drivers = _column_indices(driver_columns, labels, X, "driver_columns")
        targets = np.setdiff1d(targets, drivers)
        if drivers.size == 0 or targets.size == 0:
            raise ValueError("MAR amputation needs at least one driver column and one other column to mask")
        raise_for_columns(labels, np.intersect1d(drivers, all_missing_columns(values)),
                          "driver column(s) {columns} have no observed value")
        raise_for_columns(labels, np.intersect1d(drivers, constant_columns(values)),
                          "driver column(s) {columns} are constant, so they cannot drive missingness")
        z = _standardize(values[:, drivers])
        w = rng.standard_normal((drivers.size, targets.size))
        score = z @ w
        sd = score.std(axis=0)
        sd[sd == 0] = 1.0
        eta[:, targets] = strength * score / sd
    elif mech == "MNAR":
        raise_for_columns(labels, np.intersect1d(targets, constant_columns(values)),
                          "column(s) {columns} are constant, so MNAR self-masking on the value is undefined")
        eta[:, targets] = strength * _standardize(values[:, targets])
    eligible = ~np.isnan(values)
    eligible[:, np.setdiff1d(np.arange(values.shape[1]), targets)] = False
    if mech == "MCAR":
        cells = np.flatnonzero(eligible)
        mask = np.zeros(values.size, dtype=bool)
        mask[rng.choice(cells, round(rate * cells.size), replace=False)] = True
        return mask.reshape(values.shape)
    return _mask_top(eta, eligible, float(rate), rng)


def ampute(
    X: np.ndarray | pd.DataFrame,
    mechanism: Mechanism,
    rate: float,
    random_state: int | np.random.Generator | None = None,
    **kwargs: object,
) -> np.ndarray:
    """Float copy of X (n_rows, n_columns) with NaN in the cells chosen by ``ampute_mask``.

    Cells already missing stay missing. See ``ampute_mask`` for the parameters.
    """
    values, _ = as_float_matrix(X, "X")
    values[ampute_mask(X, mechanism, rate, random_state, **kwargs)] = np.nan  # type: ignore[arg-type]
    return values
