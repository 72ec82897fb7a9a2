"""Little's (1988) chi-square test that data are missing completely at random (MCAR).

    d^2 = sum over missing-data patterns p of n_p (ybar_p - mu_p)' Sigma_p^-1 (ybar_p - mu_p)

where ybar_p is the mean of the observed variables over the n_p rows with pattern p, and mu_p,
Sigma_p the corresponding parts of the maximum-likelihood mean and covariance of a multivariate
normal fitted to all rows by EM. Under MCAR d^2 ~ chi^2 with sum_p k_p - k degrees of freedom
(k_p observed variables in pattern p, k variables). Rows with no observed variable carry no
information and are left out.

Hand-written: neither scipy, scikit-learn, statsmodels nor pingouin (checked: 0.7.0) provides
Little's test or EM estimation of a normal mean/covariance from incomplete data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from models.missingness._validation import (
    all_missing_columns,
    as_float_matrix,
    constant_columns,
    raise_for_columns,
)


@dataclass(frozen=True)
class LittleResult:
    """Little's MCAR test: chi-square statistic, degrees of freedom, p-value, missing-data patterns."""

    statistic: float
    df: int
    p_value: float
    n_patterns: int


def _patterns(observed: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(observed column indices, row indices) per distinct pattern of the boolean matrix."""
    keys, inverse = np.unique(observed, axis=0, return_inverse=True)
    return [(np.flatnonzero(key), np.flatnonzero(inverse.ravel() == p)) for p, key in enumerate(keys)]


def em_mean_cov(X: np.ndarray, max_iter: int = 1000, tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray, int]:
    """Maximum-likelihood mean (k,) and covariance (k, k) of a multivariate normal by EM.

    X: (n, k) float array with NaN for missing cells; every row must have an observed value and
    every column at least two distinct observed values. The covariance is the ML one (divisor n).
    Stops when no mean or covariance entry changes by more than ``tol`` times the column scales.
    Returns (mean, covariance, iterations).
    """
    n, k = X.shape
    center = np.nanmean(X, axis=0)
    scale = np.nanstd(X, axis=0)
    Z = (X - center) / scale  # EM on standardized data (better conditioned), mapped back below
    groups = _patterns(~np.isnan(Z))
    mu = np.zeros(k)
    sigma = np.eye(k)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        t1 = np.zeros(k)
        t2 = np.zeros((k, k))
        for obs, rows in groups:
            zo = Z[np.ix_(rows, obs)]
            mis = np.setdiff1d(np.arange(k), obs)
            full = np.empty((rows.size, k))
            full[:, obs] = zo
            if mis.size:
                coef = np.linalg.solve(sigma[np.ix_(obs, obs)], sigma[np.ix_(obs, mis)]).T  # (|mis|, |obs|)
                full[:, mis] = mu[mis] + (zo - mu[obs]) @ coef.T
                t2[np.ix_(mis, mis)] += rows.size * (sigma[np.ix_(mis, mis)] - coef @ sigma[np.ix_(obs, mis)])
            t1 += full.sum(axis=0)
            t2 += full.T @ full
        new_mu = t1 / n
        new_sigma = t2 / n - np.outer(new_mu, new_mu)
        change = max(np.abs(new_mu - mu).max(), np.abs(new_sigma - sigma).max())
        mu, sigma = new_mu, (new_sigma + new_sigma.T) / 2
        if change < tol:
            break
    return center + scale * mu, sigma * np.outer(scale, scale), n_iter


def little_mcar_test(X: np.ndarray | pd.DataFrame, max_iter: int = 1000, tol: float = 1e-8) -> LittleResult:
    """Little's MCAR test on X (n_rows, n_columns), numeric with NaN for missing cells.

    A small p-value is evidence against MCAR. Data without missing values give statistic 0,
    df 0 and p-value 1 (nothing to test). Raises ValueError naming the columns that are
    non-numeric, infinite, entirely missing or constant (their covariance is singular), and when
    the estimated covariance is singular (collinear columns) or there are too few rows.
    """
    values, labels = as_float_matrix(X, "X", min_rows=2)
    raise_for_columns(labels, all_missing_columns(values),
                      "X: column(s) {columns} have no observed value; drop them before Little's test")
    raise_for_columns(labels, constant_columns(values),
                      "X: column(s) {columns} are constant (singular covariance); drop them before Little's test")
    observed = ~np.isnan(values)
    values = values[observed.any(axis=1)]
    observed = observed[observed.any(axis=1)]
    n, k = values.shape
    if n <= k:
        raise ValueError(f"X has {n} row(s) with an observed value for {k} columns; Little's test needs more rows")
    singular = ValueError("X: the estimated covariance is singular (collinear columns); drop redundant columns")
    try:
        mu, sigma, _ = em_mean_cov(values, max_iter=max_iter, tol=tol)
    except np.linalg.LinAlgError as err:
        raise singular from err
    if np.linalg.eigvalsh(sigma).min() <= 1e-10 * np.trace(sigma) / k:
        raise singular
    groups = _patterns(observed)
    statistic = 0.0
    for obs, rows in groups:
        diff = values[np.ix_(rows, obs)].mean(axis=0) - mu[obs]
        statistic += rows.size * float(diff @ np.linalg.solve(sigma[np.ix_(obs, obs)], diff))
    df = int(sum(obs.size for obs, _ in groups) - k)
    p_value = float(stats.chi2.sf(statistic, df)) if df > 0 else 1.0
    return LittleResult(statistic=statistic if df > 0 else 0.0, df=df, p_value=p_value, n_patterns=len(groups))
