"""Baseline imputers behind one validated sklearn-style interface, and the imputer registry.

Every imputer here (and :class:`models.impute.gain.GAINImputer`) takes an ``(n_samples, n_features)``
numeric array or DataFrame with NaN marking missing cells and returns a float64 ndarray of the same
shape with every cell finite (a non-finite result raises RuntimeError rather than leaking a NaN).
Bad input fails loudly with a ValueError naming the column (validation shared with
``models.missingness``): non-numeric columns, infinities, a column with no observed value at fit time,
and for KNN fewer rows than ``n_neighbors``. Constant columns are fine (they impute to the constant).
Columns are labelled by DataFrame name, or ``column <i>`` for arrays.

``make_imputer(name, random_state, **params)`` builds any of: "mean", "median", "knn", "mice",
"missforest", "gain".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (registers IterativeImputer)
from sklearn.impute import IterativeImputer, SimpleImputer
from sklearn.linear_model import BayesianRidge
from sklearn.utils.validation import check_is_fitted

from models.impute.knn import FastKNNImputer
from models.missingness._validation import all_missing_columns, as_float_matrix, raise_for_columns

IMPUTER_NAMES = ("mean", "median", "knn", "mice", "missforest", "gain")


class CheckedImputer(TransformerMixin, BaseEstimator):
    """Base of the registry's imputers: validated input, finite output.

    Subclasses implement ``_fit(values)`` and ``_transform(values)`` on validated float64 arrays.
    """

    def fit(self, X: np.ndarray | pd.DataFrame, y: None = None) -> CheckedImputer:
        """Learn the imputation model from X, shape (n_samples, n_features), NaN = missing."""
        self._fit(self._validate_fit(X))
        return self

    def transform(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Return X with every missing cell imputed, float64, shape (n_samples, n_features)."""
        check_is_fitted(self, "n_features_in_")
        values, _ = as_float_matrix(X)
        if values.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {values.shape[1]} columns; the imputer was fitted on {self.n_features_in_}")
        return self._finish(self._transform(values))

    def _validate_fit(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        values, labels = as_float_matrix(X)
        raise_for_columns(labels, all_missing_columns(values),
                          "X: column(s) {columns} have no observed value; drop them before imputation")
        self.n_features_in_ = values.shape[1]
        self.feature_names_ = labels
        return values

    def _finish(self, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out, dtype=np.float64)
        bad = ~np.isfinite(out).all(axis=0)
        if bad.any():
            raise RuntimeError(f"{type(self).__name__} produced non-finite values in "
                               f"{self.feature_names_[int(np.argmax(bad))]!r}")
        return out

    def _fit(self, values: np.ndarray) -> None:
        raise NotImplementedError

    def _transform(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _SklearnBackedImputer(CheckedImputer):
    """A CheckedImputer delegating to the estimator returned by ``_build()`` (stored as ``imputer_``)."""

    def _build(self) -> Any:
        raise NotImplementedError

    def _fit(self, values: np.ndarray) -> None:
        self.imputer_ = self._build().fit(values)

    def _transform(self, values: np.ndarray) -> np.ndarray:
        return self.imputer_.transform(values)

    def fit_transform(self, X: np.ndarray | pd.DataFrame, y: None = None, **fit_params: Any) -> np.ndarray:
        """Fit on X and return it imputed; for iterative imputers this is the final round's imputation."""
        values = self._validate_fit(X)
        self.imputer_ = self._build()
        return self._finish(self.imputer_.fit_transform(values))


class SimpleBaselineImputer(_SklearnBackedImputer):
    """Column mean or median imputation (sklearn ``SimpleImputer``).

    Parameters
    ----------
    strategy : {"mean", "median"}
    """

    def __init__(self, strategy: str = "mean") -> None:
        self.strategy = strategy

    def _build(self) -> SimpleImputer:
        if self.strategy not in ("mean", "median"):
            raise ValueError(f"strategy must be 'mean' or 'median', got {self.strategy!r}")
        return SimpleImputer(strategy=self.strategy)


class MICEImputer(_SklearnBackedImputer):
    """MICE-style chained equations: sklearn ``IterativeImputer`` with ``BayesianRidge``.

    Posterior means rather than draws (``sample_posterior=False``), i.e. a single deterministic
    imputation as in the GAIN paper's MICE comparison, starting from column means.

    Parameters
    ----------
    max_iter : int, rounds over all columns.
    tol : float, stopping tolerance of ``IterativeImputer``.
    random_state : int or None
    """

    def __init__(self, max_iter: int = 10, tol: float = 1e-3, random_state: int | None = None) -> None:
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _build(self) -> IterativeImputer:
        return IterativeImputer(estimator=BayesianRidge(), sample_posterior=False, max_iter=self.max_iter,
                                tol=self.tol, initial_strategy="mean", random_state=self.random_state)


class MissForestImputer(_SklearnBackedImputer):
    """MissForest (Stekhoven & Buehlmann, Bioinformatics 2012) via sklearn ``IterativeImputer``.

    As in the paper/R package: random forests with 100 trees and ``mtry = floor(sqrt(p))``
    (``max_features="sqrt"``), mean pre-imputation, columns visited in increasing order of missingness,
    at most 10 rounds. Difference: the stopping rule is ``IterativeImputer``'s tolerance on the largest
    change instead of "stop when the normalised change first increases".

    Parameters
    ----------
    n_estimators : int, trees per forest.
    max_features : str, int or float, features tried per split (sklearn semantics).
    max_iter : int, rounds over all columns.
    tol : float, stopping tolerance of ``IterativeImputer``.
    random_state : int or None
    n_jobs : int or None, forest parallelism.
    """

    def __init__(self, n_estimators: int = 100, max_features: str | int | float = "sqrt", max_iter: int = 10,
                 tol: float = 1e-3, random_state: int | None = None, n_jobs: int | None = None) -> None:
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _build(self) -> IterativeImputer:
        forest = RandomForestRegressor(n_estimators=self.n_estimators, max_features=self.max_features,
                                       random_state=self.random_state, n_jobs=self.n_jobs)
        return IterativeImputer(estimator=forest, initial_strategy="mean", imputation_order="ascending",
                                max_iter=self.max_iter, tol=self.tol, random_state=self.random_state)


class KNNBaselineImputer(_SklearnBackedImputer):
    """k-nearest-neighbour imputation: ``models.impute.knn.FastKNNImputer`` (sklearn ``KNNImputer``'s results;
    ties at the k-th donor go to the lower row index, see its module doc).

    Parameters
    ----------
    n_neighbors : int, more than the fit data's rows raises ValueError.
    weights : {"uniform", "distance"}
    """

    def __init__(self, n_neighbors: int = 5, weights: str = "uniform") -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights

    def _build(self) -> FastKNNImputer:
        return FastKNNImputer(n_neighbors=self.n_neighbors, weights=self.weights)


def make_imputer(name: str, random_state: int | None = None, **params: Any) -> CheckedImputer:
    """Build a registry imputer by name.

    Parameters
    ----------
    name : one of ``IMPUTER_NAMES``: "mean", "median", "knn", "mice", "missforest", "gain".
    random_state : int or None, passed to the stochastic imputers (mice, missforest, gain).
    **params : constructor parameters of the imputer (e.g. ``n_neighbors=10`` for "knn").
    """
    if name in ("mean", "median"):
        return SimpleBaselineImputer(strategy=name, **params)
    if name == "knn":
        return KNNBaselineImputer(**params)
    if name == "mice":
        return MICEImputer(random_state=random_state, **params)
    if name == "missforest":
        return MissForestImputer(random_state=random_state, **params)
    if name == "gain":
        # imported here: gain.py builds on this module's CheckedImputer
        from models.impute.gain import GAINImputer

        return GAINImputer(random_state=random_state, **params)
    raise ValueError(f"unknown imputer {name!r}; choose one of {', '.join(IMPUTER_NAMES)}")
