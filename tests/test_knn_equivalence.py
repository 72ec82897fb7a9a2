"""FastKNNImputer returns what sklearn.impute.KNNImputer returns, edge cases too; ties by fit-row index."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.impute import KNNImputer
from sklearn.metrics.pairwise import nan_euclidean_distances

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


def _zero_inflated(n: int, p: int, seed: int, zeros: float = 0.77, rate: float = 0.2) -> np.ndarray:
    """Counts, ~77% zeros (the GAIN paper's Spam set), 10% duplicated rows: ties everywhere."""
    rng = np.random.default_rng(seed)
    X = rng.poisson(2.0, (n, p)).astype(float) * (rng.random((n, p)) > zeros)
    dup = rng.random(n) < 0.1
    X[dup] = X[rng.integers(0, n, dup.sum())]
    X[rng.random(X.shape) < rate] = np.nan
    return X


def _rule_reference(X: np.ndarray, k: int, weights: str) -> tuple[np.ndarray, np.ndarray]:
    """Brute force with the documented tie rule: the first k potential donors in (distance, fit-row
    index) order. On integer data scikit-learn's distances are exact, so they serve as reference.
    Also returns, per cell, whether the k-th place is tied between donors of different values."""
    D = nan_euclidean_distances(X, X)
    out, tied = X.copy(), np.zeros(X.shape, dtype=bool)
    for i, j in zip(*np.nonzero(np.isnan(X)), strict=True):
        pool = np.flatnonzero(~np.isnan(X[:, j]))
        d = np.where(np.isnan(D[i, pool]), np.inf, D[i, pool])
        if np.isinf(d).all():
            out[i, j] = np.nanmean(X[:, j])
            continue
        donors = np.lexsort((pool, d))[:k]
        dk = d[donors][-1]
        tied[i, j] = len(pool) > k and np.isfinite(dk) and np.unique(X[pool[d == dk], j]).size > 1 \
            and (d < dk).sum() + (d == dk).sum() > k
        dd, vals = d[donors], X[pool[donors], j]
        if weights == "uniform":
            w = np.isfinite(dd).astype(float)
        else:
            w = np.where(dd == 0, 1.0, 0.0) if (dd == 0).any() else np.where(np.isfinite(dd), 1 / dd, 0.0)
        out[i, j] = (w * np.where(w > 0, vals, 0.0)).sum() / w.sum()
    return out, tied


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_ties_go_to_the_lower_fit_row_index_and_are_the_only_difference_from_sklearn(weights: str) -> None:
    """Zero-inflated integer data: crowds of tied donors (zero distances, duplicate rows) larger
    than the candidate list, so cells take the wider search; all arithmetic exact."""
    X = _zero_inflated(1000, 12, seed=1)
    ref, got, imp = _both(X, 5, weights)
    rule, tied = _rule_reference(X, 5, weights)
    assert imp.n_widened_ > 0 and tied.sum() > 50  # the test does exercise wide crowds and ties
    np.testing.assert_allclose(got, rule, rtol=0, atol=1e-12)
    differs = np.abs(got - ref) > 1e-12
    assert not (differs & ~tied).any()  # sklearn differs only where the k-th place is tied


def test_ties_at_the_kth_place_do_not_depend_on_blocks_threads_or_row_order() -> None:
    X = _zero_inflated(900, 8, seed=2)
    got = FastKNNImputer().fit_transform(X)
    np.testing.assert_array_equal(FastKNNImputer(block_size=13, n_jobs=2).fit_transform(X), got)
    perm = np.random.default_rng(0).permutation(len(X))  # query rows shuffled, fit rows (and ties) not
    np.testing.assert_array_equal(FastKNNImputer().fit(X).transform(X[perm]), got[perm])


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
