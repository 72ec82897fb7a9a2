"""Filling a study's gaps with the imputer it uses, and, for KNN ("closest imputation"), its donors.

A study fills with the benchmark's winner (``imputation.fill: best``) or with KNN whatever wins
(``imputation.fill: knn``): each gap then takes the mean of the same variable over the k most similar
subject-visits, and every donor is recorded, so a reviewer can see which actual records a value
came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.impute.knn import DonorKNNImputer

FILL_MODES = ("best", "knn")


@dataclass(frozen=True)
class FillPlan:
    """The imputer that fills the study's gaps, its parameters, and why."""

    imputer: str
    params: dict[str, Any]
    reason: str


def fill_plan(fill: str, best: str, best_params: dict[str, Any], best_reason: str,
              params: dict[str, dict[str, Any]]) -> FillPlan:
    """The imputer of mode ``fill`` (:data:`FILL_MODES`): the benchmark's ``best`` (with its parameters
    and reason) or KNN with the study's ``params["knn"]``."""
    if fill not in FILL_MODES:
        raise ValueError(f"fill must be one of {FILL_MODES}, got {fill!r}")
    if fill == "best" or best == "knn":
        return FillPlan(best, dict(best_params), f"the benchmark's best: {best_reason}")
    return FillPlan("knn", dict(params.get("knn", {})),
                    f"closest imputation (KNN with recorded donors) as the study config asks (imputation.fill: "
                    f"knn), although the benchmark's best is {best_reason}")


@dataclass(frozen=True)
class KNNFill:
    """``imputed``: the frame with every gap filled; ``donors``: one row per (filled cell, donor), see
    :func:`fill_with_donors`; ``model``: the fitted :class:`~models.impute.knn.DonorKNNImputer`."""

    imputed: pd.DataFrame
    donors: pd.DataFrame
    model: DonorKNNImputer


def fill_with_donors(observed: pd.DataFrame, n_neighbors: int = 5, weights: str = "uniform",
                     label_levels: list[str] | None = None) -> KNNFill:
    """KNN imputation of ``observed`` (rows = records, e.g. subject x visit; NaN = gap) from its own
    rows, with the donors of every filled cell (scikit-learn's KNNImputer values; ties as
    :class:`~models.impute.knn.FastKNNImputer` documents).

    ``donors`` columns: the record's index levels (``label_levels`` of them, default all), VARIABLE,
    FILLED_VALUE, DONOR_RANK (1 = nearest), the donor's index levels prefixed ``DONOR_``, DISTANCE
    (nan-Euclidean over the commonly observed variables, scaled by sqrt(n_variables / n_common)),
    N_COMMON, DONOR_VALUE, WEIGHT (share of the filled value) and METHOD ("donors", or "pool_mean"
    when no record shares an observed variable with it: the variable's mean, no donor).
    """
    levels = list(observed.index.names)
    if any(name is None for name in levels):
        raise ValueError("observed: every index level needs a name (they label records and donors)")
    keep = label_levels or levels
    unknown = [name for name in keep if name not in levels]
    if unknown:
        raise ValueError(f"label_levels {unknown} are not index levels of observed ({levels})")
    model = DonorKNNImputer(n_neighbors=n_neighbors, weights=weights).fit(observed)
    imputed, audit = model.transform(observed, return_audit=True)
    positions = [levels.index(name) for name in keep]

    def split(labels: pd.Series, prefix: str) -> pd.DataFrame:
        present = labels.notna().to_numpy()
        rows = [tuple(label[i] for i in positions) if ok else (None,) * len(positions)
                for label, ok in zip(labels, present, strict=True)]
        frame = pd.DataFrame(rows, columns=[f"{prefix}{name}" for name in keep], index=labels.index)
        for name in keep:  # keep the index's dtypes (None rows become missing values)
            dtype = observed.index.get_level_values(name).dtype
            frame[f"{prefix}{name}"] = frame[f"{prefix}{name}"].astype(dtype if present.all() else _nullable(dtype))
        return frame

    donors = pd.concat([
        split(audit["record"], ""),
        audit[["column", "filled_value", "donor_rank"]].set_axis(["VARIABLE", "FILLED_VALUE", "DONOR_RANK"], axis=1),
        split(audit["donor"], "DONOR_"),
        audit[["distance", "n_common", "donor_value", "weight", "method"]].set_axis(
            ["DISTANCE", "N_COMMON", "DONOR_VALUE", "WEIGHT", "METHOD"], axis=1),
    ], axis=1).reset_index(drop=True)
    return KNNFill(imputed, donors, model)


def _nullable(dtype: np.dtype | pd.api.extensions.ExtensionDtype) -> Any:
    """A dtype that can hold missing values: float for numbers, object otherwise."""
    return "float64" if pd.api.types.is_numeric_dtype(dtype) else "object"
