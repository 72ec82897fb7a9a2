"""FastKNNImputer returns what sklearn.impute.KNNImputer returns, in its edge cases too."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.impute import KNNImputer

from models.impute import DonorKNNImputer, FastKNNImputer


def _mcar(n: int, p: int, rate: float, seed: int, integers: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, integers, (n, p)).astype(float) if integers else rng.normal(3.0, 2.0, (n, p))
    X[rng.random(X.shape) < rate] = np.nan
    return X


def _both(X: np.ndarray, k: int, weights: str, X_new: np.ndarray | None = None, **ours):
    query = X if X_new is None else X_new
    ref = KNNImputer(n_neighbors=k, weights=weights).fit(X).transform(query)
    imp = FastKNNImputer(n_neighbors=k, weights=weights, **ours).fit(X)
    return ref, imp.transform(query), imp


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize(("n", "p", "rate", "k"), [(300, 12, 0.2, 1), (300, 12, 0.2, 3), (300, 12, 0.2, 5),
                                                   (2600, 12, 0.15, 3), (500, 30, 0.5, 5)])
def test_equal_to_sklearn(n: int, p: int, rate: float, k: int, weights: str) -> None:
    """(2600 rows: enough for the two-step candidate selection over chunks of fit rows.)"""
    ref, got, _ = _both(_mcar(n, p, rate, seed=n + p), k, weights)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_uniform_weights_equal_sklearn_even_when_distances_are_tiny() -> None:
    """8 columns, 30% missing: many pairs share one coordinate, so sklearn's distances carry
    rounding noise (see test_distances_are_exact_...); the donor sets still agree."""
    ref, got, _ = _both(_mcar(2600, 8, 0.3, seed=9), 5, "uniform")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_ties_and_zero_distances_resolve_as_sklearn(weights: str) -> None:
    """Integer data: many exactly tied and zero distances (duplicate rows); all arithmetic exact."""
    X = _mcar(1500, 6, 0.25, seed=1, integers=3)
    X = np.vstack([X, X[:200]])
    ref, got, imp = _both(X, 5, weights)
    assert imp.n_full_ranked_ > 0  # cells with a tie at the k-th place were ranked as sklearn does
    assert np.array_equal(got, ref)


def test_new_rows_small_blocks_and_threads_give_the_same_answer() -> None:
    X, X_new = _mcar(900, 10, 0.3, seed=2), _mcar(150, 10, 0.4, seed=3)
    ref, got, _ = _both(X, 4, "distance", X_new, block_size=7, n_jobs=2)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    single = FastKNNImputer(n_neighbors=4, weights="distance", n_jobs=1).fit(X).transform(X_new)
    np.testing.assert_array_equal(single, got)


def test_no_common_coordinates_sparse_columns_and_empty_rows() -> None:
    X = _mcar(2000, 10, 0.2, seed=4)
    X[:, 3] = np.nan
    X[[5, 77, 900], 3] = [1.0, 2.0, 3.0]  # column with fewer donors than k
    X[10] = np.nan  # row with nothing observed: column means
    X[11] = np.nan
    X[11, 3] = 5.0  # shares no observed column with any donor of the other columns
    for weights in ("uniform", "distance"):
        ref, got, _ = _both(X, 5, weights)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got[10], np.nanmean(X, axis=0))


@pytest.mark.parametrize(("mode", "keep"), [("drop", False), ("zero", True)])
def test_empty_fit_columns_as_sklearn_when_asked(mode: str, keep: bool) -> None:
    X = _mcar(400, 6, 0.2, seed=5)
    X[:, [1, 4]] = np.nan
    ref = KNNImputer(keep_empty_features=keep).fit_transform(X)
    got = FastKNNImputer(empty_features=mode).fit_transform(X)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="'column 1', 'column 4'.*no observed value"):
        FastKNNImputer().fit(X)


def test_constant_column_is_fine_as_in_sklearn() -> None:
    X = _mcar(300, 12, 0.1, seed=6)
    X[:, 2] = np.where(np.isnan(X[:, 2]), np.nan, 7.0)
    ref, got, _ = _both(X, 5, "uniform")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    assert np.all(got[:, 2] == 7.0)


def test_dataframe_in_dataframe_out() -> None:
    X = _mcar(200, 4, 0.2, seed=7)
    df = pd.DataFrame(X, columns=["age", "sbp", "dbp", "hr"], index=np.arange(200) + 1000)
    out = FastKNNImputer().fit_transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(df.columns)
    assert out.index.equals(df.index)
    np.testing.assert_allclose(out.to_numpy(), KNNImputer().fit_transform(X), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="columns differ"):
        FastKNNImputer().fit(df).transform(df[["sbp", "age", "dbp", "hr"]])


def test_distances_are_exact_where_sklearn_loses_digits() -> None:
    """sklearn's |x|^2 + |y|^2 - 2xy expansion cancels for close pairs; ours sums differences."""
    pool = np.array([[1000.0, 1000.001, 4.0], [1000.0, 1000.25, 4.5], [np.nan, 999.0, 5.0]])
    record = np.array([[1000.0, 1000.0, np.nan]])
    _, audit = DonorKNNImputer(n_neighbors=2).fit(pool).transform(record, return_audit=True)
    for row in audit.itertuples():
        common = ~np.isnan(record[0]) & ~np.isnan(pool[row.donor])
        exact = sum((Fraction(a) - Fraction(b)) ** 2 for a, b in zip(record[0][common], pool[row.donor][common],
                                                                       strict=True))
        assert row.distance == pytest.approx(float(exact * Fraction(3, int(common.sum()))) ** 0.5, rel=1e-14)
    assert set(audit["donor"]) == {0, 1}


def test_is_a_scikit_learn_estimator() -> None:
    imp = FastKNNImputer(n_neighbors=3, weights="distance", n_jobs=1)
    copy = clone(imp)
    assert copy.get_params() == imp.get_params() and not hasattr(copy, "fit_X_")
    X = _mcar(100, 5, 0.2, seed=8)
    np.testing.assert_array_equal(copy.set_params(n_neighbors=2).fit_transform(X),
                                  FastKNNImputer(n_neighbors=2, weights="distance").fit_transform(X))
