"""Differentially private Gaussian copula: noisy binned marginals and a noisy normal-score correlation.

Hand-written: no maintained library in the product venv fits a DP copula (smartnoise-synth has none,
and its MST/AIM live in a separate venv because of its pins; see benchmarks/dp_venv.sh). The design
follows DPCopula (Li, Xiong & Jiang 2014) with the Gaussian mechanism and zCDP accounting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.stats import norm

from models.synth.copula import CopulaSampler
from models.synth.dp.base import DPSynthesizer, to_probabilities

_U_EPS = 1e-4  # keeps normal scores finite (|z| < 3.8)
_MIN_EIGENVALUE = 1e-3  # the repaired correlation matrix is comfortably positive definite


def clipped_score_products(z: np.ndarray, clip_norm: float) -> np.ndarray:
    """Upper-triangle (i < j) entries of mean(z_r z_r^T) over the rows r of ``z`` (n, d), each row
    first scaled to L2 norm at most ``clip_norm``. Replacing one row moves the result by at most
    clip_norm^2 / n in L2 norm, whatever the rows (the sensitivity the noise is calibrated to)."""
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    clipped = z * np.minimum(1.0, clip_norm / np.maximum(norms, 1e-300))
    return (clipped.T @ clipped / len(z))[np.triu_indices(z.shape[1], k=1)]


def nearest_correlation(off_diagonal: np.ndarray, d: int) -> np.ndarray:
    """A positive-definite correlation matrix (d, d) near the symmetric matrix with unit diagonal and
    the given upper triangle: eigenvalues floored at 1e-3, then rescaled to unit diagonal."""
    matrix = np.eye(d)
    matrix[np.triu_indices(d, k=1)] = off_diagonal
    matrix = np.triu(matrix, 1) + np.triu(matrix).T
    values, vectors = np.linalg.eigh(matrix)
    repaired = (vectors * np.maximum(values, _MIN_EIGENVALUE)) @ vectors.T
    scale = 1 / np.sqrt(np.diag(repaired))
    return repaired * np.outer(scale, scale)


class DPGaussianCopulaSynthesizer(CopulaSampler, DPSynthesizer):
    """Gaussian copula with an (epsilon, delta)-DP guarantee (replace-one-subject neighbours).

    Budget split (rho of zCDP, the Gaussian mechanism throughout; recorded in ``privacy_``):

    1. ``domain_share`` of rho, only when a bound or category set is estimated (see
       :class:`~models.synth.dp.base.DPSynthesizer`);
    2. ``marginal_share`` of the rest: one histogram per column over its codes (missing, categories or
       bins of the public range), measured together, L2 sensitivity sqrt(2 d) for d columns;
    3. the remainder: the normal-score ("rank") correlation. Each row's normal scores come from the
       DP marginals alone (a uniform draw inside the row's code interval of the noisy CDF of present
       values, then Phi^-1; 0 for a missing value), so a row's scores depend on no other row; rows
       are clipped to L2 norm ``clip * sqrt(d)`` and the upper triangle of mean(z z^T) gets noise
       for its sensitivity clip^2 d / n (:func:`clipped_score_products`).

    Post-processing: noisy counts projected onto the simplex of n rows
    (:func:`~models.synth.dp.base.to_probabilities`); noisy correlations shrunk toward 0 by the
    share of their spread that the noise explains (1 - sigma^2 / mean(r^2), floored at 0), divided
    by the DP share of rows where both values are present, then repaired to the nearest
    positive-definite correlation matrix (:func:`nearest_correlation`). With one column the whole
    budget goes to the marginal.

    Sample: normal scores from N(0, R) (exact strata by :class:`~models.synth.copula.CopulaSampler`),
    mapped to codes through the noisy CDFs; numeric values are placed inside their bin by the score's
    position in the code's interval (a piecewise-linear CDF). Missing values are drawn independently
    per column with the noisy missing share (missingness is modelled as completely at random; MST
    keeps its dependence on other columns).

    Parameters
    ----------
    marginal_share : float in (0, 1), see 2.
    clip : float > 0, row clipping norm in units of sqrt(d), see 3.
    epsilon, delta, columns, estimate_domain, domain_share, n_bins, random_state, verbose, progress,
    min_acceptance : see :class:`~models.synth.dp.base.DPSynthesizer`.

    Attributes
    ----------
    marginals_ : list of ndarray, cumulative noisy probabilities of the present codes per column;
    missing_ : ndarray (d,), noisy share of missing values per column;
    correlation_ : ndarray (d, d); noisy_marginals_, noisy_correlations_ : the raw DP measurements.
    """

    mechanism = "dp_copula"

    def __init__(
        self,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        columns: Mapping[str, Mapping[str, Any]] | None = None,
        estimate_domain: bool = False,
        domain_share: float = 0.1,
        n_bins: int | str = "auto",
        marginal_share: float = 0.5,
        clip: float = 1.5,
        random_state: int | None = None,
        verbose: bool = False,
        progress: Callable[[dict], None] | None = None,
        min_acceptance: float = 1e-3,
    ) -> None:
        super().__init__(epsilon=epsilon, delta=delta, columns=columns, estimate_domain=estimate_domain,
                         domain_share=domain_share, n_bins=n_bins, random_state=random_state, verbose=verbose,
                         progress=progress, min_acceptance=min_acceptance)
        self.marginal_share = marginal_share
        self.clip = clip

    def _validate_params(self) -> None:
        super()._validate_params()
        if not 0 < self.marginal_share < 1:
            raise ValueError(f"marginal_share must be in (0, 1), got {self.marginal_share!r}")
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip!r}")

    def _marginal_share(self, n_columns: int) -> float:
        return self.marginal_share if n_columns > 1 else 1.0

    def _fit(self, codes: np.ndarray, rng: np.random.Generator) -> None:
        n, d = codes.shape
        sizes = self.encoder_.sizes_
        sigma = self.accountant_.gaussian("one-way marginals (histogram per column)", np.sqrt(2 * d),
                                          self._marginal_share(d) * self.rho_left)
        self.noisy_marginals_, self.marginals_, self.missing_ = [], [], np.empty(d)
        for j in range(d):
            noisy = np.bincount(codes[:, j], minlength=sizes[j]) + rng.normal(0.0, sigma, sizes[j])
            p = to_probabilities(noisy, n)
            self.noisy_marginals_.append(noisy)
            self.missing_[j] = p[0]
            cum = np.concatenate([[0.0], np.cumsum(p[1:] / p[1:].sum())])
            cum[-1] = 1.0
            self.marginals_.append(cum)
        self.correlation_ = np.eye(d)
        self.noisy_correlations_ = np.empty(0)
        if d > 1:
            clip_norm = self.clip * np.sqrt(d)
            sigma_r = self.accountant_.gaussian("normal-score correlation (rows clipped)", clip_norm**2 / n,
                                                self.rho_left)
            noisy = clipped_score_products(self._row_scores(codes, rng), clip_norm)
            noisy = noisy + rng.normal(0.0, sigma_r, len(noisy))
            self.noisy_correlations_ = noisy
            shrink = max(0.0, 1 - sigma_r**2 / max(float(np.mean(noisy**2)), 1e-300))
            present = 1 - self.missing_
            both = np.outer(present, present)[np.triu_indices(d, k=1)]  # missing scores are 0: undo the dilution
            self.correlation_ = nearest_correlation(np.clip(shrink * noisy / both, -1, 1), d)
        self._report(f"fitted on {n} rows x {d} columns within {self.accountant_.guarantee()['epsilon']:.3g}-DP",
                     stage="fit", elapsed_s=0.0)

    def _row_scores(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Normal scores (n, d): a uniform draw inside each row's code interval of the noisy CDF of the
        present values; 0 (the median) for a missing value."""
        z = np.zeros(codes.shape)
        for j, cum in enumerate(self.marginals_):
            present = codes[:, j] > 0
            c = codes[present, j] - 1
            u = cum[c] + rng.random(len(c)) * (cum[c + 1] - cum[c])
            z[present, j] = norm.ppf(np.clip(u, _U_EPS, 1 - _U_EPS))
        return z

    def _sample_codes(self, n: int, conditions: dict[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        u = norm.cdf(self._scores(n, {j: code - 1 for j, code in conditions.items()}, rng))
        codes = np.empty(u.shape, dtype=np.int64)
        within = np.empty(u.shape)
        for j, cum in enumerate(self.marginals_):
            present = conditions[j] - 1 if j in conditions else np.searchsorted(cum[1:-1], u[:, j], side="right")
            low, width = cum[present], np.diff(cum)[present]
            within[:, j] = np.clip((u[:, j] - low) / np.maximum(width, 1e-300), 0.0, 1.0)
            missing = np.zeros(n, bool) if j in conditions else rng.random(n) < self.missing_[j]
            codes[:, j] = np.where(missing, 0, present + 1)
        return codes, within
