"""Little's MCAR test and the EM estimates behind it, on data where the answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models.missingness import ampute, em_mean_cov, little_mcar_test

COV = np.array([[1.0, 0.5, 0.3, 0.2], [0.5, 1.0, 0.4, 0.1], [0.3, 0.4, 1.0, 0.3], [0.2, 0.1, 0.3, 1.0]])


def _sample(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).multivariate_normal([1.0, -2.0, 0.5, 3.0], COV, n)


def test_mcar_data_gives_uniform_p_values() -> None:
    p = np.array([little_mcar_test(ampute(_sample(300, r), "MCAR", 0.15, r)).p_value for r in range(40)])
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert np.mean(p < 0.05) <= 0.2


@pytest.mark.parametrize("mechanism", ["MAR", "MNAR"])
def test_mar_and_mnar_data_give_small_p_values(mechanism: str) -> None:
    drivers = [0] if mechanism == "MAR" else None
    p = [little_mcar_test(ampute(_sample(300, r), mechanism, 0.2, r, driver_columns=drivers)).p_value
         for r in range(8)]
    assert max(p) < 0.05 and np.median(p) < 1e-3


def _monotone(n: int, m: int, seed: int) -> np.ndarray:
    """Bivariate normal, x2 observed only in the first m rows (monotone pattern)."""
    X = np.random.default_rng(seed).multivariate_normal([0.0, 1.0], [[2.0, 0.8], [0.8, 1.0]], n)
    X[m:, 1] = np.nan
    return X


def _monotone_ml(X: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ML mean/covariance for the bivariate monotone pattern (Anderson, 1957)."""
    x1, cc = X[:, 0], X[:m]
    s = np.cov(cc.T, ddof=0)
    beta = s[0, 1] / s[0, 0]
    mu1, s11 = x1.mean(), x1.var()
    mu2 = cc[:, 1].mean() + beta * (mu1 - cc[:, 0].mean())
    s22 = s[1, 1] - beta**2 * s[0, 0] + beta**2 * s11
    return np.array([mu1, mu2]), np.array([[s11, beta * s11], [beta * s11, s22]])


def test_em_matches_closed_form_ml_for_a_monotone_pattern() -> None:
    X = _monotone(400, 250, 1)
    mu, sigma, n_iter = em_mean_cov(X, tol=1e-12)
    mu_ref, sigma_ref = _monotone_ml(X, 250)
    assert n_iter > 1
    np.testing.assert_allclose(mu, mu_ref, atol=1e-8)
    np.testing.assert_allclose(sigma, sigma_ref, atol=1e-8)


def test_em_on_complete_data_is_the_sample_mean_and_ml_covariance() -> None:
    X = _sample(200, 2)
    mu, sigma, _ = em_mean_cov(X)
    np.testing.assert_allclose(mu, X.mean(axis=0), atol=1e-10)
    np.testing.assert_allclose(sigma, np.cov(X.T, ddof=0), atol=1e-10)


def test_statistic_df_and_patterns_match_a_hand_computation() -> None:
    X = _monotone(400, 250, 3)
    mu, sigma = _monotone_ml(X, 250)
    cc, inc = X[:250], X[250:, 0]
    d = cc.mean(axis=0) - mu
    expected = 250 * d @ np.linalg.solve(sigma, d) + 150 * (inc.mean() - mu[0]) ** 2 / sigma[0, 0]
    res = little_mcar_test(pd.DataFrame(X, columns=["a", "b"]), tol=1e-12)
    assert res.n_patterns == 2 and res.df == 1  # 2 + 1 observed variables - 2 variables
    assert res.statistic == pytest.approx(expected, rel=1e-6)
    assert res.p_value == pytest.approx(stats.chi2.sf(expected, 1), rel=1e-5)


def test_rows_without_observed_values_are_ignored_and_complete_data_has_nothing_to_test() -> None:
    X = ampute(_sample(300, 4), "MCAR", 0.1, 4)
    with_empty = np.vstack([X, np.full((5, 4), np.nan)])
    assert little_mcar_test(with_empty) == little_mcar_test(X)
    complete = little_mcar_test(_sample(100, 5))
    assert (complete.statistic, complete.df, complete.p_value, complete.n_patterns) == (0.0, 0, 1.0, 1)


@pytest.mark.parametrize(
    ("column", "match"),
    [(np.nan, "'bad'.*no observed value"), (7.0, "'bad'.*constant"), (np.inf, "infinite.*'bad'")],
)
def test_bad_columns_are_named(column: float, match: str) -> None:
    df = pd.DataFrame(ampute(_sample(50, 6), "MCAR", 0.1, 6), columns=list("abcd")).assign(bad=column)
    with pytest.raises(ValueError, match=match):
        little_mcar_test(df)


def test_collinear_columns_and_too_few_rows_raise() -> None:
    X = ampute(_sample(100, 7), "MCAR", 0.1, 7)
    with pytest.raises(ValueError, match="singular"):
        little_mcar_test(np.column_stack([X, X[:, 0] * 2 + 1]))
    with pytest.raises(ValueError, match="more rows"):
        little_mcar_test(X[:4])
    with pytest.raises(ValueError, match="non-numeric.*'site'"):
        little_mcar_test(pd.DataFrame({"a": [1.0, np.nan, 3.0], "site": ["x", "y", "z"]}))
