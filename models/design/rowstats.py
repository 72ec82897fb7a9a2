"""Two-arm test statistics computed row-wise: one row = one simulated trial.

Each function takes the control and the treatment arm as separate arrays of shape
``(n_trials, n_control)`` and ``(n_trials, n_treatment)`` and returns one statistic per row
(shape ``(n_trials,)``), signed treatment minus control. ``observed_*`` (optional boolean masks of
the same shapes) mark subjects who did not drop out; unobserved values are ignored. Rows that
cannot be tested (an arm with too few observed subjects) give NaN.

scipy.stats.ttest_ind / chi2_contingency / logrank and an OLS fit compute the same statistics (the
tests check that) but one trial per call; a Python loop over thousands of trials is what the
simulation must avoid, so the statistics are written out here as sums along axis 1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


class _Moments(NamedTuple):
    """Per-row count, mean and centred sum of squares of one arm."""

    n: FloatArray
    mean: FloatArray
    ss: FloatArray


def _moments(y: np.ndarray, observed: np.ndarray | None) -> _Moments:
    if observed is None:
        mean = y.mean(axis=1)
        return _Moments(np.full(y.shape[0], float(y.shape[1])), mean, ((y - mean[:, None]) ** 2).sum(axis=1))
    w = np.asarray(observed, dtype=float)
    n = w.sum(axis=1)
    mean = (w * y).sum(axis=1) / n
    # two passes (centre, then square) rather than sum(y^2) - n mean^2, which cancels badly
    return _Moments(n, mean, (w * (y - mean[:, None]) ** 2).sum(axis=1))


def _cross(
    y: np.ndarray, z: np.ndarray, my: FloatArray, mz: FloatArray, observed: np.ndarray | None
) -> FloatArray:
    """Per-row centred cross-product sum(w (y - my)(z - mz))."""
    prod = (y - my[:, None]) * (z - mz[:, None])
    return (prod if observed is None else prod * observed).sum(axis=1)


def _arm_with_covariate(
    y: np.ndarray, z: np.ndarray, observed: np.ndarray | None
) -> tuple[_Moments, _Moments, FloatArray]:
    my, mz = _moments(y, observed), _moments(z, observed)
    return my, mz, _cross(y, z, my.mean, mz.mean, observed)


def ttest(
    control: np.ndarray,
    treatment: np.ndarray,
    observed_control: np.ndarray | None = None,
    observed_treatment: np.ndarray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Student's pooled-variance two-sample t per row. Returns ``(t, df)``, each ``(n_trials,)``."""
    c, t = _moments(control, observed_control), _moments(treatment, observed_treatment)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = c.n + t.n - 2.0
        stat = (t.mean - c.mean) / np.sqrt((c.ss + t.ss) / df * (1.0 / c.n + 1.0 / t.n))
    return stat, df


def ancova(
    control: np.ndarray,
    treatment: np.ndarray,
    covariate_control: np.ndarray,
    covariate_treatment: np.ndarray,
    observed_control: np.ndarray | None = None,
    observed_treatment: np.ndarray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """t of the treatment coefficient in the OLS fit ``y ~ 1 + treated + covariate`` per row.

    Uses the within-arm (pooled) slope b = sum S_zy / sum S_zz: effect = (ybar_t - ybar_c) -
    b (zbar_t - zbar_c), SE^2 = s^2 (1/n_c + 1/n_t + (zbar_t - zbar_c)^2 / sum S_zz), df = n - 3.
    Returns ``(t, df)``.
    """
    yc, zc, s_zy_c = _arm_with_covariate(control, covariate_control, observed_control)
    yt, zt, s_zy_t = _arm_with_covariate(treatment, covariate_treatment, observed_treatment)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_zz, s_zy = zc.ss + zt.ss, s_zy_c + s_zy_t
        slope = s_zy / s_zz
        dz = zt.mean - zc.mean
        effect = (yt.mean - yc.mean) - slope * dz
        df = yc.n + yt.n - 3.0
        s2 = (yc.ss + yt.ss - slope * s_zy) / df
        stat = effect / np.sqrt(s2 * (1.0 / yc.n + 1.0 / yt.n + dz**2 / s_zz))
    return stat, df


def two_proportions_z(
    control: np.ndarray,
    treatment: np.ndarray,
    observed_control: np.ndarray | None = None,
    observed_treatment: np.ndarray | None = None,
    continuity_correction: bool = False,
) -> FloatArray:
    """Signed pooled-variance z per row from 0/1 outcomes; z**2 is Pearson's chi-square of the 2x2 table.

    With ``continuity_correction`` |p_t - p_c| is reduced by (1/n_c + 1/n_t)/2 (floored at 0), which
    is Yates' corrected chi-square as in ``scipy.stats.chi2_contingency(correction=True)``.
    """

    def counts(y: np.ndarray, obs: np.ndarray | None) -> tuple[FloatArray, FloatArray]:
        if obs is None:
            return np.full(y.shape[0], float(y.shape[1])), np.count_nonzero(y, axis=1).astype(float)
        return np.count_nonzero(obs, axis=1).astype(float), np.count_nonzero(y & obs, axis=1).astype(float)

    control, treatment = np.asarray(control, dtype=bool), np.asarray(treatment, dtype=bool)
    (n_c, x_c), (n_t, x_t) = counts(control, observed_control), counts(treatment, observed_treatment)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = x_t / n_t - x_c / n_c
        pooled = (x_c + x_t) / (n_c + n_t)
        inv_n = 1.0 / n_c + 1.0 / n_t
        size = np.abs(diff)
        if continuity_correction:
            size = np.maximum(size - inv_n / 2.0, 0.0)
        z = np.sign(diff) * size / np.sqrt(pooled * (1.0 - pooled) * inv_n)
    # all successes or all failures: no evidence either way
    return np.where((pooled > 0) & (pooled < 1), z, 0.0)


def logrank_z(
    time_control: np.ndarray,
    event_control: np.ndarray,
    time_treatment: np.ndarray,
    event_treatment: np.ndarray,
) -> FloatArray:
    """Log-rank z per row: (O_t - E_t) / sqrt(V), positive when the treated arm has excess events.

    ``time_*`` are follow-up times, ``event_*`` booleans (True = event, False = censored). Each row is
    sorted by time once; the numbers at risk are reverse cumulative sums. Times are assumed
    continuous (no ties, as in the simulations), so each event forms its own risk set.
    """
    time = np.concatenate([time_control, time_treatment], axis=1)
    event = np.concatenate([event_control, event_treatment], axis=1).astype(bool)
    n_c, n = time_control.shape[1], time.shape[1]
    order = np.argsort(time, axis=1)
    ev = np.take_along_axis(event, order, axis=1)
    tr = order >= n_c  # treatment columns come after the control columns
    # treated at risk at sorted position i = treated in total - treated sorted before i
    at_risk_t = time_treatment.shape[1] - np.cumsum(tr, axis=1, dtype=np.int32) + tr
    share_t = at_risk_t / np.arange(n, 0, -1, dtype=float)  # n - i subjects have time >= t_i
    expected = ev * share_t  # E_t contributions, zero at censored times
    e_t = expected.sum(axis=1)
    var = e_t - (expected * share_t).sum(axis=1)  # sum over events of share (1 - share)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.count_nonzero(event_treatment, axis=1) - e_t) / np.sqrt(var)
