"""Gaussian copula synthesizer: empirical marginals joined by a Gaussian correlation structure."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from scipy.stats import multivariate_normal, norm, rankdata, truncnorm

from models.synth.base import BaseSynthesizer

_EPS = 1e-9  # keeps normal scores finite (|z| < 6)
_RIDGE = 1e-6  # keeps the correlation matrix positive definite (duplicated or constant columns)


class CopulaSampler:
    """Normal scores from N(0, ``correlation_``), the conditioned columns' scores truncated to their
    strata: the rarest stratum by inverse-CDF truncated normal, further strata by rejection given it,
    the other scores from the conditional normal given them. Mixed into synthesizers (before
    :class:`BaseSynthesizer`) that set ``correlation_`` and ``marginals_`` (per model column; for a
    column that can be conditioned on, its cumulative frequencies of length n_codes + 1)."""

    def _scores(self, n: int, conditions: dict[int, int], rng: np.random.Generator) -> np.ndarray:
        """Normal scores (n, n_model_columns) whose conditioned columns lie in their strata."""
        d = len(self.marginals_)
        scores = np.empty((n, d))
        given = list(conditions)
        rest = [j for j in range(d) if j not in conditions]
        if given:
            scores[:, given] = self._sample_strata(n, conditions, rng)
        if rest:
            mean, cov = _conditional(self.correlation_, given, rest)
            noise = multivariate_normal(np.zeros(len(rest)), cov, allow_singular=True).rvs(
                n, random_state=rng
            )
            scores[:, rest] = scores[:, given] @ mean.T + noise.reshape(n, len(rest))
        return scores

    def _sample_strata(self, n: int, conditions: dict[int, int], rng: np.random.Generator) -> np.ndarray:
        """Normal scores (n, len(conditions)) of the conditioned columns, from N(0, R) truncated to the
        strata boxes, in the order of ``conditions``."""
        given = list(conditions)
        bounds = {j: norm.ppf(self.marginals_[j][[code, code + 1]]) for j, code in conditions.items()}
        pivot = min(given, key=lambda j: np.diff(norm.cdf(bounds[j]))[0])
        others = [j for j in given if j != pivot]
        mean, cov = _conditional(self.correlation_, [pivot], others)
        noise = multivariate_normal(np.zeros(len(others)), cov, allow_singular=True) if others else None
        lo, hi = np.array([bounds[j] for j in others]).reshape(-1, 2).T

        def generate(k: int) -> np.ndarray:
            z = np.empty((k, len(given)))
            z[:, 0] = truncnorm.rvs(*bounds[pivot], size=k, random_state=rng)
            if others:
                z[:, 1:] = z[:, :1] @ mean.T + noise.rvs(k, random_state=rng).reshape(k, len(others))
            return z

        def accept(z: np.ndarray) -> np.ndarray:
            return np.all((z[:, 1:] >= lo) & (z[:, 1:] <= hi), axis=1)

        z = self._rejection_sample(n, generate, accept, lambda: self._describe_conditions(conditions))
        order = [pivot, *others]
        return z[:, [order.index(j) for j in given]]


class GaussianCopulaSynthesizer(CopulaSampler, BaseSynthesizer):
    """Gaussian copula over the model columns (schema columns plus missing indicators).

    Fit: each numeric column is mapped to normal scores through its empirical CDF
    (``Phi^-1(rank / (n + 1))``) and summarised by ``n_quantiles`` quantiles; each categorical column
    gets one interval of [0, 1] per category with width equal to its training frequency, and a row's
    normal score is ``Phi^-1`` of a uniform draw inside its category's interval. The correlation
    matrix of all normal scores is the copula.

    Sample: draw normal scores from N(0, R) and map them back through the quantiles / intervals.
    Conditions are exact: the conditioned scores are drawn from the normal truncated to the strata
    (the rarest stratum by inverse-CDF truncated normal, further strata by rejection given it), the
    other scores from the conditional normal given them.

    Parameters
    ----------
    n_quantiles : int >= 2
        Quantiles stored per numeric column (the artifact keeps these, not the training rows).
    random_state, verbose, progress, min_acceptance : see :class:`BaseSynthesizer`.

    Attributes
    ----------
    correlation_ : ndarray (n_model_columns, n_model_columns)
    marginals_ : list of ndarray; quantile knots (numeric) or cumulative frequencies of length
        n_categories + 1 (categorical), per model column.
    """

    def __init__(
        self,
        n_quantiles: int = 1001,
        random_state: int | None = None,
        verbose: bool = False,
        progress: Callable[[dict], None] | None = None,
        min_acceptance: float = 1e-3,
    ) -> None:
        super().__init__(
            random_state=random_state, verbose=verbose, progress=progress, min_acceptance=min_acceptance
        )
        self.n_quantiles = n_quantiles

    def _validate_params(self) -> None:
        super()._validate_params()
        if (
            isinstance(self.n_quantiles, bool)
            or not isinstance(self.n_quantiles, int)
            or self.n_quantiles < 2
        ):
            raise ValueError(f"n_quantiles must be an integer >= 2, got {self.n_quantiles!r}")

    def _fit(self, matrix: np.ndarray, rng: np.random.Generator) -> None:
        start = time.perf_counter()
        n, d = matrix.shape
        scores = np.empty_like(matrix)
        self.marginals_ = []
        for j, col in enumerate(self.encoder_.columns_):
            x = matrix[:, j]
            if col.discrete:
                codes = x.astype(int)
                cum = np.concatenate([[0.0], np.cumsum(np.bincount(codes, minlength=col.n_categories))]) / n
                u = cum[codes] + rng.random(n) * (cum[codes + 1] - cum[codes])
                self.marginals_.append(cum)
            else:
                u = rankdata(x) / (n + 1)
                self.marginals_.append(np.quantile(x, np.linspace(0, 1, self.n_quantiles)))
            scores[:, j] = norm.ppf(np.clip(u, _EPS, 1 - _EPS))
        std = scores.std(axis=0)
        corr = np.eye(d)
        ok = std > 0  # constant columns carry no dependence
        corr[np.ix_(ok, ok)] = np.corrcoef(scores[:, ok], rowvar=False).reshape(ok.sum(), ok.sum())
        self.correlation_ = (1 - _RIDGE) * corr + _RIDGE * np.eye(d)
        elapsed = time.perf_counter() - start
        self._report(
            f"fitted on {n} rows x {d} model columns in {elapsed:.2f} s", stage="fit", elapsed_s=elapsed
        )

    def _sample(self, n: int, conditions: dict[int, int], rng: np.random.Generator) -> np.ndarray:
        u = norm.cdf(self._scores(n, conditions, rng))
        out = np.empty((n, len(self.marginals_)))
        for j, (col, marginal) in enumerate(zip(self.encoder_.columns_, self.marginals_, strict=True)):
            if j in conditions:
                out[:, j] = conditions[j]
            elif col.discrete:
                out[:, j] = np.searchsorted(marginal[1:-1], u[:, j], side="right")
            else:
                out[:, j] = np.interp(u[:, j], np.linspace(0, 1, len(marginal)), marginal)
        return out


def _conditional(corr: np.ndarray, given: list[int], target: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """For z ~ N(0, corr): E[z_target | z_given] = z_given @ A.T and Cov[z_target | z_given] = S.
    Returns (A (len(target), len(given)), S (len(target), len(target)))."""
    r_tt = corr[np.ix_(target, target)]
    if not given:
        return np.zeros((len(target), 0)), r_tt
    r_gt = corr[np.ix_(given, target)]
    a = np.linalg.solve(corr[np.ix_(given, given)], r_gt).T
    return a, r_tt - a @ r_gt
