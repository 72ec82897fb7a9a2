"""Privacy accounting in zero-concentrated DP (zCDP, Bun & Steinke 2016) and its (epsilon, delta) bound.

Every mechanism of the DP synthesizers is a Gaussian mechanism (rho = sensitivity^2 / (2 sigma^2)) or
an exponential mechanism (epsilon-DP, hence epsilon^2 / 8 - zCDP, Cesar & Rogers 2021); zCDP
composes by adding rho. A total rho is turned into (epsilon, delta)-DP with the conversion of
Canonne, Kamath & Steinke 2020 (Proposition 12 / Corollary 13, the one MST and private-pgm use):

    delta(rho, epsilon) = min over alpha > 1 of
        exp((alpha - 1)(alpha rho - epsilon) + alpha log(1 - 1/alpha)) / (alpha - 1)

Hand-written (a few lines on scipy.optimize) because the packages that ship it (opendp, private-pgm's
cdp2adp, autodp) are not in the product venv; any alpha gives a valid bound, so an inexact minimum
can only overstate delta, never understate it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scipy.optimize import brentq, minimize_scalar


def delta_from_rho(rho: float, epsilon: float) -> float:
    """delta of the (epsilon, delta)-DP guarantee implied by rho-zCDP (both >= 0)."""
    if rho < 0 or epsilon < 0:
        raise ValueError(f"rho and epsilon must be >= 0, got rho={rho!r}, epsilon={epsilon!r}")
    if rho == 0:
        return 0.0

    def log_delta(alpha: float) -> float:
        return (alpha - 1) * (alpha * rho - epsilon) + alpha * math.log1p(-1 / alpha) - math.log(alpha - 1)

    # the optimal alpha is near (epsilon + rho) / (2 rho) + 1; search a generous bracket around it
    upper = (epsilon + 1) / (2 * rho) + 2
    best = minimize_scalar(log_delta, bounds=(1 + 1e-9, upper), method="bounded", options={"xatol": 1e-12})
    return min(1.0, math.exp(min(best.fun, log_delta(upper))))


def rho_from_epsilon_delta(epsilon: float, delta: float) -> float:
    """The largest rho whose zCDP guarantee implies (epsilon, delta)-DP."""
    _check_budget(epsilon, delta)
    high = epsilon + 1.0  # delta_from_rho(epsilon + 1, epsilon) is ~1 > any delta allowed here
    return brentq(lambda rho: delta_from_rho(rho, epsilon) - delta, 1e-12, high, xtol=1e-15, rtol=1e-12) * (1 - 1e-9)


def epsilon_from_rho(rho: float, delta: float) -> float:
    """The smallest epsilon with delta_from_rho(rho, epsilon) <= delta."""
    if rho == 0:
        return 0.0
    high = rho + 2 * math.sqrt(rho * math.log(1 / delta)) + 1e-9  # the simple bound (Bun & Steinke, Prop. 1.3)
    return brentq(lambda eps: delta_from_rho(rho, eps) - delta, 0.0, high, xtol=1e-12)


def gaussian_sigma(l2_sensitivity: float, rho: float) -> float:
    """Noise standard deviation of the Gaussian mechanism that is rho-zCDP."""
    if l2_sensitivity <= 0 or rho <= 0:
        raise ValueError(f"l2_sensitivity and rho must be > 0, got {l2_sensitivity!r}, {rho!r}")
    return l2_sensitivity / math.sqrt(2 * rho)


def _check_budget(epsilon: float, delta: float) -> None:
    if not (isinstance(epsilon, int | float) and 0 < epsilon <= 100):
        raise ValueError(f"epsilon must be a number in (0, 100], got {epsilon!r}")
    if not (isinstance(delta, int | float) and 0 < delta < 1):
        raise ValueError(f"delta must be a number in (0, 1), got {delta!r}")


@dataclass(frozen=True)
class Measurement:
    """One use of the data: ``mechanism`` "gaussian" (``scale`` = noise sigma, ``sensitivity`` = L2)
    or "exponential" (``scale`` = epsilon of one selection, ``sensitivity`` = score sensitivity)."""

    label: str
    mechanism: str
    sensitivity: float
    scale: float
    rho: float


class ZCDPAccountant:
    """Hands out a rho-zCDP budget equivalent to (epsilon, delta)-DP and records every spend.

    ``delta_threshold`` (<= delta / 2) is reserved for mechanisms whose guarantee holds except with
    probability delta_threshold (the thresholded category discovery of :mod:`models.synth.dp.domain`);
    the rest of delta pays for the zCDP -> (epsilon, delta) conversion.
    """

    def __init__(self, epsilon: float, delta: float, delta_threshold: float = 0.0) -> None:
        _check_budget(epsilon, delta)
        if not 0 <= delta_threshold <= delta / 2:
            raise ValueError(f"delta_threshold must be in [0, delta/2], got {delta_threshold!r}")
        self.epsilon, self.delta, self.delta_threshold = float(epsilon), float(delta), float(delta_threshold)
        self.rho_budget = rho_from_epsilon_delta(epsilon, delta - delta_threshold)
        self.measurements: list[Measurement] = []

    @property
    def rho_spent(self) -> float:
        return sum(m.rho for m in self.measurements)

    def _spend(self, measurement: Measurement) -> None:
        if self.rho_spent + measurement.rho > self.rho_budget * (1 + 1e-9):
            raise ValueError(f"{measurement.label}: rho {measurement.rho:.4g} exceeds the remaining budget "
                             f"{self.rho_budget - self.rho_spent:.4g}")
        self.measurements.append(measurement)

    def gaussian(self, label: str, l2_sensitivity: float, rho: float) -> float:
        """Record a Gaussian mechanism spending ``rho``; returns its noise sigma."""
        sigma = gaussian_sigma(l2_sensitivity, rho)
        self._spend(Measurement(label, "gaussian", float(l2_sensitivity), sigma, float(rho)))
        return sigma

    def exponential(self, label: str, score_sensitivity: float, rho: float) -> float:
        """Record an exponential mechanism spending ``rho``; returns its epsilon (sqrt(8 rho))."""
        epsilon = math.sqrt(8 * rho)
        self._spend(Measurement(label, "exponential", float(score_sensitivity), epsilon, float(rho)))
        return epsilon

    def guarantee(self) -> dict:
        """What was spent, JSON-ready: epsilon and delta (the zCDP conversion of rho_spent plus
        delta_threshold), rho, the budget asked for, and every measurement."""
        spent_epsilon = epsilon_from_rho(self.rho_spent, self.delta - self.delta_threshold)
        return {
            "epsilon": spent_epsilon, "delta": self.delta, "rho": self.rho_spent,
            "budget": {"epsilon": self.epsilon, "delta": self.delta, "rho": self.rho_budget},
            "delta_threshold": self.delta_threshold,
            "neighbours": "replace one subject's row (the number of training rows is public)",
            "measurements": [asdict(m) for m in self.measurements],
        }
