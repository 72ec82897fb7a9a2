"""Donor mode: fill actual records from a reference pool, with an auditable donor list."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import KNNImputer
from sklearn.metrics.pairwise import nan_euclidean_distances

from models.impute import DonorKNNImputer

COLS = ["age", "sbp", "dbp", "hr", "bmi", "ldl"]


def _pool_and_actual(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    cov = np.full((6, 6), 0.5) + 0.5 * np.eye(6)
    pool = pd.DataFrame(rng.multivariate_normal(np.zeros(6), cov, 800), columns=COLS,
                        index=[f"SYN-{i:04d}" for i in range(800)])
    pool = pool.mask(rng.random(pool.shape) < 0.1)
    actual = pd.DataFrame(rng.multivariate_normal(np.zeros(6), cov, 60), columns=COLS,
                          index=[f"SUBJ-{i:03d}" for i in range(60)])
    return pool, actual.mask(rng.random(actual.shape) < 0.25)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_values_are_sklearn_knn_fitted_on_the_pool(weights: str) -> None:
    pool, actual = _pool_and_actual()
    filled = DonorKNNImputer(n_neighbors=5, weights=weights).fit(pool).transform(actual)
    ref = KNNImputer(n_neighbors=5, weights=weights).fit(pool.to_numpy()).transform(actual.to_numpy())
    assert isinstance(filled, pd.DataFrame) and filled.index.equals(actual.index)
    np.testing.assert_allclose(filled.to_numpy(), ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_audit_lists_the_k_nearest_donors_with_their_distances(weights: str) -> None:
    pool, actual = _pool_and_actual(1)
    imp = DonorKNNImputer(n_neighbors=4, weights=weights).fit(pool)
    filled, audit = imp.transform(actual, return_audit=True)
    assert audit is imp.audit_
    dist = nan_euclidean_distances(actual.to_numpy(), pool.to_numpy())
    gaps = actual.isna().stack()
    gaps = gaps[gaps].index  # (record, column) of every filled cell
    assert set(zip(audit["record"], audit["column"], strict=True)) == set(gaps)
    for (record, column), cell in audit.groupby(["record", "column"]):
        i = actual.index.get_loc(record)
        pool_has = np.flatnonzero(pool[column].notna().to_numpy())
        nearest = pool_has[np.argsort(dist[i, pool_has], kind="stable")[:4]]
        assert sorted(cell["donor"]) == sorted(pool.index[nearest])
        assert cell["donor_rank"].tolist() == [1, 2, 3, 4]
        assert cell["distance"].is_monotonic_increasing
        np.testing.assert_allclose(cell["distance"], dist[i, pool.index.get_indexer(cell["donor"])], rtol=1e-9)
        np.testing.assert_allclose(cell["donor_value"], pool.loc[cell["donor"], column].to_numpy())
        assert cell["weight"].sum() == pytest.approx(1.0)
        assert (cell["filled_value"] == filled.loc[record, column]).all()
        assert (cell["weight"] * cell["donor_value"]).sum() == pytest.approx(filled.loc[record, column], abs=1e-12)
        for row in cell.itertuples():  # unscaled Euclidean distance over the commonly observed columns
            a, b = actual.loc[record].to_numpy(), pool.loc[row.donor].to_numpy()
            common = ~np.isnan(a) & ~np.isnan(b)
            assert row.n_common == common.sum()
            assert row.euclidean_common == pytest.approx(np.sqrt(((a - b)[common] ** 2).sum()), rel=1e-12)
    assert (audit["method"] == "donors").all()


def test_arrays_use_positions_and_pool_mean_fallback_is_reported() -> None:
    pool = np.array([[1.0, np.nan, 10.0], [2.0, np.nan, 20.0], [np.nan, 5.0, 30.0], [np.nan, 7.0, 50.0]])
    actual = np.array([[1.5, np.nan, np.nan]])  # shares no column with the pool rows observing column 1
    filled, audit = DonorKNNImputer(n_neighbors=2).fit(pool).transform(actual, return_audit=True)
    assert filled[0, 1] == 6.0  # mean of the pool's observed column 1 (no donor has a distance)
    assert filled[0, 2] == 15.0  # rows 0 and 1 share column 0
    fallback = audit[audit["column"] == "column 1"]
    assert fallback["method"].tolist() == ["pool_mean"] and fallback["donor"].isna().all()
    assert sorted(audit.loc[audit["column"] == "column 2", "donor"]) == [0, 1]
    assert not np.isnan(filled).any()


def test_bad_input() -> None:
    pool, actual = _pool_and_actual(2)
    with pytest.raises(ValueError, match="exceeds the 3 row"):
        DonorKNNImputer(n_neighbors=5).fit(pool.iloc[:3])
    with pytest.raises(ValueError, match="'ldl'.*no observed value"):
        DonorKNNImputer().fit(pool.assign(ldl=np.nan))
    with pytest.raises(ValueError, match="non-numeric.*'arm'"):
        DonorKNNImputer().fit(pool).transform(actual.assign(arm="A"))
    with pytest.raises(ValueError, match="infinite.*'hr'"):
        DonorKNNImputer().fit(pool).transform(actual.assign(hr=np.inf))
    with pytest.raises(ValueError, match="7 columns"):
        DonorKNNImputer().fit(pool.to_numpy()).transform(np.zeros((2, 7)))
