"""The imputer registry: every imputer fills every gap, keeps observed cells, and rejects bad input by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import KNNImputer

from models.impute.baselines import IMPUTER_NAMES, make_imputer

FAST = {"gain": {"iterations": 50}, "missforest": {"n_estimators": 10, "max_iter": 3}}


def _data(n: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlated 4-column data, a 20% MCAR copy with NaN, and the mask."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    X = z @ np.array([[1.0, 2.0, -1.0, 0.5]]) + 0.2 * rng.normal(size=(n, 4)) + np.array([0.0, 5.0, 50.0, -3.0])
    mask = rng.random(X.shape) < 0.2
    return X, np.where(mask, np.nan, X), mask


@pytest.mark.parametrize("name", IMPUTER_NAMES)
def test_every_imputer_fills_gaps_and_keeps_observed(name):
    X, Xm, mask = _data()
    out = make_imputer(name, random_state=0, **FAST.get(name, {})).fit_transform(Xm)
    assert out.shape == X.shape and out.dtype == np.float64 and np.isfinite(out).all()
    np.testing.assert_allclose(out[~mask], X[~mask])


@pytest.mark.parametrize("name", ["knn", "mice", "missforest"])
def test_model_based_imputers_beat_the_mean(name):
    X, Xm, mask = _data(300)
    err = lambda out: np.sqrt(np.mean((out - X)[mask] ** 2))  # noqa: E731
    mean_err = err(make_imputer("mean").fit_transform(Xm))
    assert err(make_imputer(name, random_state=0, **FAST.get(name, {})).fit_transform(Xm)) < 0.7 * mean_err


def test_mean_median_and_knn_match_their_definitions():
    _, Xm, mask = _data()
    mean = make_imputer("mean").fit_transform(Xm)
    median = make_imputer("median").fit_transform(Xm)
    cols = np.nonzero(mask)[1]
    np.testing.assert_allclose(mean[mask], np.nanmean(Xm, axis=0)[cols])
    np.testing.assert_allclose(median[mask], np.nanmedian(Xm, axis=0)[cols])
    knn = make_imputer("knn", n_neighbors=3, weights="distance").fit_transform(Xm)
    np.testing.assert_allclose(knn, KNNImputer(n_neighbors=3, weights="distance").fit_transform(Xm), atol=1e-9)


def test_seeded_imputers_are_reproducible():
    _, Xm, _ = _data()
    for name in ("mice", "missforest"):
        a = make_imputer(name, random_state=3, **FAST.get(name, {})).fit_transform(Xm)
        b = make_imputer(name, random_state=3, **FAST.get(name, {})).fit_transform(Xm)
        np.testing.assert_array_equal(a, b)


def test_fit_then_transform_new_rows():
    _, Xm, _ = _data(200)
    imp = make_imputer("mice", random_state=0).fit(Xm[:150])
    out = imp.transform(Xm[150:])
    assert out.shape == (50, 4) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="3 columns"):
        imp.transform(Xm[150:, :3])


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="missforest"):
        make_imputer("hot-deck", random_state=0)


@pytest.mark.parametrize("name", IMPUTER_NAMES)
def test_all_missing_column_is_named(name):
    _, Xm, _ = _data(40)
    df = pd.DataFrame(Xm, columns=["age", "weight", "sbp", "ldl"])
    df["sbp"] = np.nan
    with pytest.raises(ValueError, match="sbp"):
        make_imputer(name, random_state=0, **FAST.get(name, {})).fit(df)


@pytest.mark.parametrize("name", IMPUTER_NAMES)
def test_constant_column_is_imputed_with_the_constant(name):
    _, Xm, mask = _data(60)
    Xm[:, 1] = np.where(mask[:, 1], np.nan, 7.25)
    out = make_imputer(name, random_state=0, **FAST.get(name, {})).fit_transform(Xm)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 1], 7.25)


def test_non_numeric_and_infinite_columns_are_named():
    _, Xm, _ = _data(30)
    df = pd.DataFrame(Xm, columns=["age", "weight", "sbp", "ldl"])
    with pytest.raises(ValueError, match="arm"):
        make_imputer("mean").fit(df.assign(arm=["A", "B", "C"] * 10))
    df.loc[3, "ldl"] = np.inf
    with pytest.raises(ValueError, match="ldl"):
        make_imputer("gain", random_state=0, iterations=5).fit(df)


def test_knn_with_fewer_rows_than_neighbours_is_refused():
    _, Xm, _ = _data(4)
    with pytest.raises(ValueError, match="n_neighbors"):
        make_imputer("knn", n_neighbors=5).fit(Xm)
