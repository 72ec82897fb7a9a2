"""Amputation: achieved rate and the defining property of each mechanism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.missingness import ampute, ampute_mask


def _correlated(n: int, p: int, rho: float, seed: int) -> np.ndarray:
    cov = np.full((p, p), rho) + (1 - rho) * np.eye(p)
    return np.random.default_rng(seed).multivariate_normal(np.zeros(p), cov, n)


@pytest.mark.parametrize("mechanism", ["MCAR", "MAR", "MNAR"])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.6])
@pytest.mark.parametrize("n", [40, 3000])
def test_achieved_rate_within_one_point_over_eligible_cells(mechanism: str, rate: float, n: int) -> None:
    X = _correlated(n, 6, 0.3, 0)
    X[np.random.default_rng(1).random(X.shape) < 0.1] = np.nan  # pre-existing gaps
    drivers = [0] if mechanism == "MAR" else None
    mask = ampute_mask(X, mechanism, rate, 7, driver_columns=drivers)
    eligible = ~np.isnan(X)
    if mechanism == "MAR":
        eligible[:, 0] = False
        assert not mask[:, 0].any()
    assert not (mask & np.isnan(X)).any()  # only observed cells are newly masked
    assert abs(mask.sum() / eligible.sum() - rate) <= 0.01
    out = ampute(X, mechanism, rate, 7, driver_columns=drivers)
    assert np.array_equal(np.isnan(out), np.isnan(X) | mask)
    assert np.array_equal(out[~np.isnan(out)], X[~np.isnan(out)])


def test_same_seed_same_mask_and_input_untouched() -> None:
    X = _correlated(500, 4, 0.5, 2)
    before = X.copy()
    for mech in ("MCAR", "MAR", "MNAR"):
        a = ampute_mask(X, mech, 0.2, 11)
        assert np.array_equal(a, ampute_mask(X, mech, 0.2, np.random.default_rng(11)))
        assert not np.array_equal(a, ampute_mask(X, mech, 0.2, 12))
    assert np.array_equal(X, before)


def test_mcar_mask_is_independent_of_values() -> None:
    X = _correlated(20000, 4, 0.5, 3)
    mask = ampute_mask(X, "MCAR", 0.3, 0)
    for j in range(4):
        for i in range(4):  # neither the own value nor any other column predicts the mask
            assert abs(np.corrcoef(mask[:, j], X[:, i])[0, 1]) < 0.03
    assert abs(mask.mean(axis=0) - 0.3).max() < 0.02


def test_mar_depends_on_drivers_and_not_on_the_value_given_them() -> None:
    rng = np.random.default_rng(4)
    driver = rng.standard_normal(20000)
    target = 0.8 * driver + 0.6 * rng.standard_normal(20000)  # correlated with the driver
    X = np.column_stack([driver, target])
    mask = ampute_mask(X, "MAR", 0.3, 5, driver_columns=[0])[:, 1]
    assert abs(np.corrcoef(mask, driver)[0, 1]) > 0.3  # driven by the observed column
    assert abs(np.corrcoef(mask, target)[0, 1]) > 0.2  # hence not MCAR marginally
    residual = target - np.polyval(np.polyfit(driver, target, 1), driver)
    assert abs(np.corrcoef(mask, residual)[0, 1]) < 0.03  # but nothing left once the driver is known


def test_mar_default_drivers_are_never_masked() -> None:
    X = _correlated(1000, 10, 0.2, 6)
    mask = ampute_mask(X, "MAR", 0.4, 1)
    untouched = np.flatnonzero(~mask.any(axis=0))
    assert untouched.size == 3  # round(0.3 * 10) drivers
    assert abs(mask.sum() / (1000 * 7) - 0.4) <= 0.01


@pytest.mark.parametrize("strength", [2.0, -2.0])
def test_mnar_masks_systematically_large_or_small_values(strength: float) -> None:
    X = _correlated(10000, 3, 0.0, 7)
    mask = ampute_mask(X, "MNAR", 0.3, 8, strength=strength)
    for j in range(3):
        gap = X[mask[:, j], j].mean() - X[~mask[:, j], j].mean()
        assert np.sign(gap) == np.sign(strength) and abs(gap) > 0.8
        other = X[:, (j + 1) % 3]  # independent column: no dependence
        assert abs(other[mask[:, j]].mean() - other[~mask[:, j]].mean()) < 0.08


def test_columns_and_dataframe_names() -> None:
    df = pd.DataFrame(_correlated(300, 3, 0.2, 9), columns=["age", "sbp", "hr"])
    mask = ampute_mask(df, "MAR", 0.25, 0, driver_columns=["age"], columns=["hr"])
    assert not mask[:, :2].any() and abs(mask[:, 2].mean() - 0.25) <= 0.01


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mechanism": "MXAR", "rate": 0.2}, "mechanism"),
        ({"mechanism": "MCAR", "rate": 1.0}, "rate"),
        ({"mechanism": "MCAR", "rate": -0.1}, "rate"),
        ({"mechanism": "MAR", "rate": 0.2, "driver_columns": ["const"]}, "'const'.*constant"),
        ({"mechanism": "MAR", "rate": 0.2, "driver_columns": ["empty"]}, "'empty'.*no observed"),
        ({"mechanism": "MNAR", "rate": 0.2}, "'const'.*constant"),
        ({"mechanism": "MAR", "rate": 0.2, "driver_columns": ["nope"]}, "unknown column 'nope'"),
    ],
)
def test_bad_input_names_the_problem(kwargs: dict, match: str) -> None:
    df = pd.DataFrame({"x": np.arange(20.0), "const": 1.0, "empty": np.nan})
    with pytest.raises(ValueError, match=match):
        ampute(df, random_state=0, **kwargs)


def test_non_numeric_and_infinite_columns_are_named() -> None:
    with pytest.raises(ValueError, match="non-numeric.*'site'"):
        ampute(pd.DataFrame({"x": [1.0, 2.0], "site": ["a", "b"]}), "MCAR", 0.2)
    with pytest.raises(ValueError, match="infinite.*'column 1'"):
        ampute(np.array([[1.0, np.inf], [2.0, 3.0]]), "MCAR", 0.2)
