"""Analytic power and sample size for two-arm parallel trials.

Three endpoint designs, each a frozen dataclass whose constructor validates its inputs
(``ValueError`` naming the parameter):

- :class:`ContinuousDesign` -- two-sample Student t-test (or ANCOVA on a baseline covariate),
  power from the noncentral t distribution.
- :class:`BinaryDesign` -- two proportions, normal approximation either on the arcsine scale
  (Cohen's h) or as the pooled-variance z test (Fleiss), optional continuity correction.
- :class:`TimeToEventDesign` -- log-rank test, Schoenfeld's number of events, converted to subjects
  with exponential survival, uniform accrual over ``accrual`` and extra ``follow_up`` time.

Conventions shared by all designs:

- ``ratio`` = n_treatment / n_control (2.0 means 2:1 treatment:control); ``n_control`` is the
  control-arm size and the treatment arm gets ``ceil(ratio * n_control)`` subjects.
- ``sided`` is 1 or 2. A one-sided test is in the direction of the hypothesised effect, so power
  depends only on the size of the effect, not its sign.
- ``dropout`` d in [0, 1): analysable subjects are inflated to ``ceil(n / (1 - d))`` per arm to enrol.
- ``effect`` is the design's effect in its own units (mean difference, risk difference, hazard
  ratio); ``with_effect(x)`` returns a copy with another effect (used for curves over effect size).
- ``power(n_control)`` is the power with ``n_control`` *analysed* control subjects (float arrays
  allowed, for smooth curves); ``sample_size(power)`` gives the smallest integer ``n_control`` that
  reaches the target.

statsmodels / pingouin solve single scalar cases by root finding; here power is needed on whole
grids of N and effect and at exact integer N, so the closed forms are evaluated directly, vectorised,
with the ``scipy.special`` functions behind scipy.stats' normal, t and noncentral t (importing
scipy.stats costs ~0.5 s, a third of a ``trialsynth power`` call).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

Endpoint = Literal["continuous", "binary", "tte"]
ANALYSABLE_LABEL = "analysable N per arm"
"""Label of ``SampleSize.n_control`` / ``n_treatment``: subjects the test needs, after dropout."""
ENROL_LABEL = "N to enrol per arm"
"""Label of ``SampleSize.enrol_control`` / ``enrol_treatment``: analysable / (1 - dropout), rounded up."""


def check_open_unit(name: str, value: float) -> float:
    """Return ``value`` as float if it lies in the open interval (0, 1), else raise ValueError."""
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value!r}")
    return value


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float if it is finite and > 0, else raise ValueError."""
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_dropout(value: float) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {value!r}")
    return value


def z_critical(alpha: float, sided: int) -> float:
    """Standard-normal critical value for a level-``alpha`` test with ``sided`` (1 or 2) tails."""
    return float(-special.ndtri(alpha / sided))  # = scipy.stats.norm.isf


def inflate_for_dropout(n: int, dropout: float) -> int:
    """Subjects to enrol so that ``n`` remain after a dropout fraction ``dropout``: ceil(n / (1 - d))."""
    return math.ceil(n / (1.0 - check_dropout(dropout)) - 1e-9)


def _ceil(x: float) -> int:
    # tolerance so that e.g. 2.0 * 3 computed as 6.000000000000001 is not rounded up to 7
    return math.ceil(x - 1e-9)


MAX_N_PER_ARM = 10_000_000  # beyond any trial: a design needing more cannot detect its effect
MAX_STANDARDIZED_EFFECT = 100.0  # |effect| / residual SD of a continuous design


def _smallest_integer(ok: Callable[[int], bool], start: float, lowest: int = 2, highest: int = MAX_N_PER_ARM) -> int:
    """Smallest integer n in [``lowest``, ``highest``] with ``ok(n)``, for a monotone ``ok``.

    A galloping search from ``start`` (a normal-approximation answer, usually a few units off): steps
    double away from it until ``ok`` changes, then bisection, so it takes O(log |answer - start|)
    evaluations even where the approximation is far off (a linear walk took hours there). ValueError
    when even ``highest`` is not enough.
    """
    n = min(max(lowest, int(start)), highest)
    if ok(n):  # the answer is n or below: find a lower bound lo where ok fails (or lowest - 1)
        hi, lo, step = n, n - 1, 1
        while lo >= lowest and ok(lo):
            hi, step = lo, step * 2
            lo = hi - step
        lo = max(lo, lowest - 1)
    else:  # above n: find an upper bound hi where ok holds
        lo, hi, step = n, n + 1, 1
        while hi < highest and not ok(hi):
            lo, step = hi, step * 2
            hi = lo + step
        if hi >= highest:
            if not ok(highest):
                raise ValueError(f"power: not reached with {highest:,} subjects (or events) per arm: the effect is "
                                 "too small to detect in a trial")
            hi = highest
    while hi - lo > 1:  # ok(hi), not ok(lo)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


@dataclass(frozen=True)
class SampleSize:
    """Result of :meth:`sample_size`: analysed and enrolled subjects per arm, events for TTE."""

    design: ContinuousDesign | BinaryDesign | TimeToEventDesign
    target_power: float
    n_control: int
    n_treatment: int
    power: float  # analytic power achieved with the analysed n
    events: int | None = None  # required events (TTE only)

    @property
    def total_n(self) -> int:
        return self.n_control + self.n_treatment

    @property
    def enrol_control(self) -> int:
        return inflate_for_dropout(self.n_control, self.design.dropout)

    @property
    def enrol_treatment(self) -> int:
        return inflate_for_dropout(self.n_treatment, self.design.dropout)

    @property
    def total_enrol(self) -> int:
        return self.enrol_control + self.enrol_treatment


@dataclass(frozen=True, kw_only=True)
class _Design:
    """Parameters common to every endpoint (see the module docstring for conventions)."""

    endpoint: ClassVar[Endpoint]
    alpha: float = 0.05
    sided: int = 2
    ratio: float = 1.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_open_unit("alpha", self.alpha)
        if self.sided not in (1, 2):
            raise ValueError(f"sided must be 1 or 2, got {self.sided!r}")
        check_positive("ratio", self.ratio)
        check_dropout(self.dropout)

    @property
    def z_alpha(self) -> float:
        return z_critical(self.alpha, self.sided)

    def n_treatment_for(self, n_control: int) -> int:
        """Treatment-arm size for an integer control-arm size: ceil(ratio * n_control)."""
        return _ceil(self.ratio * n_control)

    def power(self, n_control: ArrayLike) -> NDArray[np.float64]:
        """Power with ``n_control`` analysed control subjects and ``ratio * n_control`` treated.

        ``n_control`` may be any array of positive numbers; the result has its shape.
        """
        n_c = np.asarray(n_control, dtype=float)
        return self._power(n_c, self.ratio * n_c)

    def power_at(self, n_control: ArrayLike, n_treatment: ArrayLike) -> NDArray[np.float64]:
        """Power with explicit analysed arm sizes (arrays broadcast together)."""
        return self._power(np.asarray(n_control, dtype=float), np.asarray(n_treatment, dtype=float))

    def _power(self, n_control: NDArray[np.float64], n_treatment: NDArray[np.float64]) -> NDArray[np.float64]:
        raise NotImplementedError

    def _normal_power(self, shift: ArrayLike) -> NDArray[np.float64]:
        """Power of a z test whose statistic is N(shift, 1), shift >= 0 in the tested direction."""
        shift = np.asarray(shift, dtype=float)
        p = special.ndtr(shift - self.z_alpha)  # norm.sf(z - shift)
        if self.sided == 2:
            p = p + special.ndtr(-self.z_alpha - shift)
        return p

    def _integer_power(self, n_control: int) -> float:
        return float(self.power_at(n_control, self.n_treatment_for(n_control)))

    def _approx_n_control(self, target_power: float) -> float:
        raise NotImplementedError

    def sample_size(self, power: float = 0.8) -> SampleSize:
        """Smallest integer control-arm size whose analytic power is >= ``power``."""
        target = check_open_unit("power", power)

        def reaches(n: int) -> bool:
            achieved = self._integer_power(n)
            if math.isnan(achieved):  # never "not yet": that would search to the end of the range
                raise ValueError(f"power: not computable for this design at {n} subjects per arm ({self!r})")
            return achieved >= target

        n_c = _smallest_integer(reaches, self._approx_n_control(target))
        return SampleSize(self, target, n_c, self.n_treatment_for(n_c), self._integer_power(n_c))

    def _z_sum_squared(self, target_power: float) -> float:
        return (self.z_alpha + float(special.ndtri(target_power))) ** 2


@dataclass(frozen=True, kw_only=True)
class ContinuousDesign(_Design):
    """Continuous outcome. ``effect`` = mean(treatment) - mean(control) in outcome units; ``sd`` the
    common standard deviation (outcome units). With ``sd=1`` the effect is Cohen's d.

    ``analysis='ttest'``: Student's two-sample t-test (noncentral t, exact under normality).
    ``analysis='ancova'``: adjusted for a baseline covariate with correlation ``baseline_correlation``
    (rho) with the outcome; the residual SD is sd * sqrt(1 - rho^2) (Borm et al. 2007), df = N - 3,
    and the chance imbalance of a normal covariate inflates the effect's variance by 1 + 1/(N - 4)
    on average. rho also shapes the simulated data (and MAR dropout) under the t-test, where it does
    not change the analytic power.
    """

    endpoint: ClassVar[Endpoint] = "continuous"
    effect: float
    sd: float = 1.0
    analysis: Literal["ttest", "ancova"] = "ttest"
    baseline_correlation: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("sd", self.sd)
        if not math.isfinite(self.effect) or self.effect == 0:
            raise ValueError(f"effect must be a finite non-zero mean difference, got {self.effect!r}")
        if self.analysis not in ("ttest", "ancova"):
            raise ValueError(f"analysis must be 'ttest' or 'ancova', got {self.analysis!r}")
        if not -1.0 < self.baseline_correlation < 1.0:
            raise ValueError(f"baseline_correlation must be in (-1, 1), got {self.baseline_correlation!r}")
        if not self.standardized_effect <= MAX_STANDARDIZED_EFFECT:  # also inf / nan from extreme inputs
            raise ValueError(f"effect: |effect| is {self.standardized_effect:.3g} residual SDs; at most "
                             f"{MAX_STANDARDIZED_EFFECT:g} (the noncentral t is not computable beyond, and no trial "
                             "is needed to see such a difference)")

    @property
    def standardized_effect(self) -> float:
        """|effect| / residual SD of the analysis."""
        if self.analysis == "ancova":
            return abs(self.effect) / (self.sd * math.sqrt(1.0 - self.baseline_correlation**2))
        return abs(self.effect) / self.sd

    def _power(self, n_control, n_treatment):
        total = n_control + n_treatment
        ncp = self.standardized_effect * np.sqrt(n_control * n_treatment / total)
        df = total - 2.0
        if self.analysis == "ancova":
            df = total - 3.0
            # chance covariate imbalance inflates the effect's variance by 1 + 1/(N - 4) on average
            ncp = ncp / np.sqrt(1.0 + 1.0 / np.maximum(total - 4.0, 1.0))
        t_crit = -special.stdtrit(df, self.alpha / self.sided)  # = scipy.stats.t.isf
        p = 1.0 - special.nctdtr(df, ncp, t_crit)  # noncentral t survival at t_crit (power, not a tail)
        if self.sided == 2:
            p = p + special.nctdtr(df, ncp, -t_crit)
        return p

    def _approx_n_control(self, target_power):
        return self._z_sum_squared(target_power) * (1 + 1 / self.ratio) / self.standardized_effect**2

    def with_effect(self, effect: float) -> ContinuousDesign:
        return replace(self, effect=effect)


@dataclass(frozen=True, kw_only=True)
class BinaryDesign(_Design):
    """Two proportions. ``effect`` = p_treatment - p_control (risk difference).

    ``method='arcsine'``: z on h = 2 asin(sqrt(p_t)) - 2 asin(sqrt(p_c)), var(h_hat) = 1/n_c + 1/n_t.
    ``method='pooled'``: the chi-square (pooled-variance z) test, unpooled variance under H1.
    ``continuity_correction`` (pooled only) subtracts (1/n_c + 1/n_t) / 2 from the difference (Yates),
    which gives the Fleiss-Tytun-Ury correction of the sample size.
    """

    endpoint: ClassVar[Endpoint] = "binary"
    p_control: float
    p_treatment: float
    method: Literal["pooled", "arcsine"] = "pooled"
    continuity_correction: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_open_unit("p_control", self.p_control)
        check_open_unit("p_treatment", self.p_treatment)
        if self.p_control == self.p_treatment:
            raise ValueError("p_treatment must differ from p_control (no effect to detect)")
        if self.method not in ("pooled", "arcsine"):
            raise ValueError(f"method must be 'pooled' or 'arcsine', got {self.method!r}")
        if self.continuity_correction and self.method == "arcsine":
            raise ValueError("continuity_correction applies to method='pooled' only")

    @property
    def cohens_h(self) -> float:
        return 2 * math.asin(math.sqrt(self.p_treatment)) - 2 * math.asin(math.sqrt(self.p_control))

    def _power(self, n_control, n_treatment):
        if self.method == "arcsine":
            return self._normal_power(abs(self.cohens_h) / np.sqrt(1 / n_control + 1 / n_treatment))
        p_c, p_t = self.p_control, self.p_treatment
        pooled = (n_control * p_c + n_treatment * p_t) / (n_control + n_treatment)
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_treatment))
        se1 = np.sqrt(p_c * (1 - p_c) / n_control + p_t * (1 - p_t) / n_treatment)
        diff = abs(p_t - p_c)
        if self.continuity_correction:
            diff = diff - (1 / n_control + 1 / n_treatment) / 2
        p = special.ndtr((diff - self.z_alpha * se0) / se1)
        if self.sided == 2:
            p = p + special.ndtr((-self.z_alpha * se0 - diff) / se1)
        return p

    def _approx_n_control(self, target_power):
        return self._z_sum_squared(target_power) * (1 + 1 / self.ratio) / self.cohens_h**2

    @property
    def effect(self) -> float:
        return self.p_treatment - self.p_control

    def with_effect(self, effect: float) -> BinaryDesign:
        return replace(self, p_treatment=self.p_control + effect)


def schoenfeld_events(
    hr: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0, sided: int = 2
) -> int:
    """Events needed by the log-rank test (Schoenfeld 1983), rounded up.

    D = (z_alpha + z_beta)^2 / (q_c q_t log(hr)^2), q_t = ratio / (1 + ratio) the treated share.
    """
    return TimeToEventDesign.events_only(hr=hr, alpha=alpha, sided=sided, ratio=ratio).required_events(power)


@dataclass(frozen=True, kw_only=True)
class TimeToEventDesign(_Design):
    """Log-rank test with exponential survival. ``effect`` = hazard ratio treatment/control.

    ``control_median`` (time units, e.g. months) gives the control hazard ln 2 / median; subjects
    enter uniformly over ``accrual`` and are followed until ``accrual + follow_up`` (same units).
    """

    endpoint: ClassVar[Endpoint] = "tte"
    hr: float
    control_median: float
    accrual: float
    follow_up: float

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("hr", self.hr)
        if self.hr == 1.0:
            raise ValueError("hr must differ from 1 (no effect to detect)")
        check_positive("control_median", self.control_median)
        if not (math.isfinite(self.accrual) and self.accrual >= 0):
            raise ValueError(f"accrual must be a finite number >= 0, got {self.accrual!r}")
        check_positive("follow_up", self.follow_up)

    @classmethod
    def events_only(cls, *, hr: float, **common) -> TimeToEventDesign:
        """A design for event counts only (survival times irrelevant): placeholder time parameters."""
        return cls(hr=hr, control_median=1.0, accrual=0.0, follow_up=1.0, **common)

    @property
    def hazard_control(self) -> float:
        return math.log(2) / self.control_median

    @property
    def hazard_treatment(self) -> float:
        return self.hr * self.hazard_control

    def event_probability(self, hazard: float) -> float:
        """P(event before the analysis) for hazard ``hazard``, uniform entry over [0, accrual].

        1 - (exp(-h F) - exp(-h (A + F))) / (h A), or 1 - exp(-h F) when A = 0.
        """
        a, f = self.accrual, self.follow_up
        if a == 0:
            return 1.0 - math.exp(-hazard * f)
        return 1.0 - (math.exp(-hazard * f) - math.exp(-hazard * (a + f))) / (hazard * a)

    @property
    def treated_share(self) -> float:
        return self.ratio / (1.0 + self.ratio)

    def _events_power(self, events: ArrayLike) -> NDArray[np.float64]:
        q = self.treated_share
        return self._normal_power(
            np.sqrt(np.asarray(events, dtype=float) * q * (1 - q)) * abs(math.log(self.hr))
        )

    def events_power(self, events: ArrayLike) -> NDArray[np.float64]:
        """Log-rank power (Schoenfeld) with ``events`` total events."""
        return self._events_power(events)

    def required_events(self, power: float = 0.8) -> int:
        target = check_open_unit("power", power)
        q = self.treated_share
        exact = self._z_sum_squared(target) / (q * (1 - q) * math.log(self.hr) ** 2)
        return _smallest_integer(lambda d: float(self._events_power(d)) >= target, exact, lowest=1)

    def expected_events(self, n_control: ArrayLike, n_treatment: ArrayLike) -> NDArray[np.float64]:
        return np.asarray(n_control) * self.event_probability(self.hazard_control) + np.asarray(
            n_treatment
        ) * self.event_probability(self.hazard_treatment)

    def _power(self, n_control, n_treatment):
        return self._events_power(self.expected_events(n_control, n_treatment))

    def sample_size(self, power: float = 0.8) -> SampleSize:
        """Schoenfeld events, then the smallest control-arm size whose expected events reach them."""
        events = self.required_events(power)
        per_control = self.event_probability(self.hazard_control) + self.ratio * self.event_probability(
            self.hazard_treatment
        )
        n_c = _smallest_integer(
            lambda n: float(self.expected_events(n, self.n_treatment_for(n))) >= events, events / per_control
        )
        return SampleSize(
            self, float(power), n_c, self.n_treatment_for(n_c), self._integer_power(n_c), events=events
        )

    @property
    def effect(self) -> float:
        return self.hr

    def with_effect(self, effect: float) -> TimeToEventDesign:
        return replace(self, hr=effect)


Design = ContinuousDesign | BinaryDesign | TimeToEventDesign

DESIGNS: dict[str, type[_Design]] = {
    cls.endpoint: cls for cls in (ContinuousDesign, BinaryDesign, TimeToEventDesign)
}
