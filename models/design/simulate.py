"""Monte Carlo power by simulating many virtual two-arm trials at once.

For ``n_trials`` trials with ``n_control`` + ``n_treatment`` *enrolled* subjects, whole
``(trials, subjects)`` matrices are drawn and analysed row-wise (:mod:`models.design.rowstats`);
trials are processed in chunks of about ``CHUNK_ELEMENTS`` matrix cells to bound memory.

Data-generating models (control arm first, then treatment; z = standardised baseline from the cohort):

- continuous: y = effect * treated + sd * (rho z + sqrt(1 - rho^2) e), e ~ N(0, 1),
  rho = ``design.baseline_correlation``; analysed as ``design.analysis`` says: Student's t-test or
  ANCOVA on z.
- binary: y ~ Bernoulli(p_control or p_treatment); chi-square test, Yates-corrected when
  ``design.continuity_correction``.
- tte: entry ~ U(0, accrual), event time ~ Exp(hazard of the arm), administrative censoring at
  accrual + follow_up; log-rank test.

Dropout with probability ``design.dropout``: for continuous/binary endpoints ``"mcar"`` (completely
at random) or ``"mar"`` (logit P(drop) = a + ``mar_strength`` * z, with a calibrated so that the
mean dropout is ``design.dropout``); dropped subjects are not analysed. For tte, ``"exponential"``
censoring: loss-to-follow-up times ~ Exp(eta), eta = -ln(1 - d) / (accrual + follow_up), i.e. d is
the probability of being lost before the end of the study in the absence of an event.

Each result keeps its seed and every input (``SimulationResult.inputs``, JSON-able);
:func:`simulate_from_inputs` reruns it and returns the identical result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import special

from models.design import rowstats
from models.design.analytic import DESIGNS, BinaryDesign, ContinuousDesign, Design, TimeToEventDesign
from models.design.cohorts import Cohort, NormalCohort, ResampledCohort

CHUNK_ELEMENTS = 1 << 21

DROPOUT_MECHANISMS = {"continuous": ("mcar", "mar"), "binary": ("mcar", "mar"), "tte": ("exponential",)}


@dataclass(frozen=True)
class SimulationResult:
    """Simulated power: share of ``n_trials`` trials that rejected H0, with its Monte Carlo SE
    sqrt(p (1 - p) / n_trials). ``inputs`` holds everything :func:`simulate_power` was called with."""

    power: float
    mc_se: float
    n_trials: int
    rejections: int
    seed: int
    inputs: dict[str, Any]


def _mar_intercept(cohort: Cohort, dropout: float, strength: float) -> float:
    """Intercept a with mean(expit(a + strength * z)) = dropout over the cohort's distribution."""
    z = cohort.calibration_values()
    from scipy import optimize  # here: MAR only, and the power CLI must start fast

    return optimize.brentq(lambda a: special.expit(a + strength * z).mean() - dropout, -50.0, 50.0)


class _Simulator:
    """One configured simulation; ``rejections(rng, rows)`` simulates and tests ``rows`` trials.

    Each chunk is one ``(rows, n_control + n_treatment)`` matrix per quantity, control columns
    first; the arms are column views of it.
    """

    def __init__(
        self,
        design: Design,
        n_control: int,
        n_treatment: int,
        dropout_mechanism: str,
        mar_strength: float,
        cohort: Cohort,
    ) -> None:
        self.design, self.mechanism, self.mar_strength, self.cohort = (
            design,
            dropout_mechanism,
            mar_strength,
            cohort,
        )
        self.n_control, self.n = n_control, n_control + n_treatment
        mar = dropout_mechanism == "mar" and design.dropout > 0
        self.mar_a = _mar_intercept(cohort, design.dropout, mar_strength) if mar else 0.0
        continuous = isinstance(design, ContinuousDesign)
        self.rho = design.baseline_correlation if continuous else 0.0
        self.ancova = continuous and design.analysis == "ancova"
        self.needs_baseline = self.rho != 0 or self.ancova or mar

    def _split(self, x: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        return (None, None) if x is None else (x[:, : self.n_control], x[:, self.n_control :])

    def _observed(
        self, rng: np.random.Generator, z: np.ndarray | None, shape: tuple[int, int]
    ) -> np.ndarray | None:
        d = self.design
        if d.dropout == 0:
            return None
        p_drop = special.expit(self.mar_a + self.mar_strength * z) if self.mechanism == "mar" else d.dropout
        return rng.random(shape) >= p_drop

    def _reject(self, stat: np.ndarray, df: np.ndarray | None) -> int:
        d = self.design
        crit = -special.stdtrit(df, d.alpha / d.sided) if df is not None else d.z_alpha  # t.isf
        if d.sided == 2:
            signed = np.abs(stat)
        else:  # one-sided in the hypothesised direction
            effect = math.log(d.hr) if isinstance(d, TimeToEventDesign) else d.effect
            signed = math.copysign(1.0, effect) * stat
        return int(np.count_nonzero(signed > crit))  # NaN (untestable trial) compares False

    def rejections(self, rng: np.random.Generator, rows: int) -> int:
        shape = (rows, self.n)
        d = self.design
        z = self.cohort.sample(shape, rng) if self.needs_baseline else None
        if isinstance(d, ContinuousDesign):
            y = rng.standard_normal(shape)
            if self.rho:
                y *= math.sqrt(1.0 - self.rho**2)
                y += self.rho * z
            y *= d.sd
            y[:, self.n_control :] += d.effect
            observed = self._split(self._observed(rng, z, shape))
            if self.ancova:
                return self._reject(*rowstats.ancova(*self._split(y), *self._split(z), *observed))
            return self._reject(*rowstats.ttest(*self._split(y), *observed))
        if isinstance(d, BinaryDesign):
            y = (
                rng.random(shape)
                < np.r_[np.full(self.n_control, d.p_control), np.full(self.n - self.n_control, d.p_treatment)]
            )
            observed = self._split(self._observed(rng, z, shape))
            return self._reject(
                rowstats.two_proportions_z(*self._split(y), *observed, d.continuity_correction), None
            )
        event_time = rng.standard_exponential(shape)
        event_time[:, : self.n_control] /= d.hazard_control
        event_time[:, self.n_control :] /= d.hazard_treatment
        censor = d.accrual + d.follow_up - rng.uniform(0.0, d.accrual, shape)
        if d.dropout:
            eta = -math.log1p(-d.dropout) / (d.accrual + d.follow_up)
            np.minimum(censor, rng.standard_exponential(shape) / eta, out=censor)
        event = event_time <= censor
        time = np.minimum(event_time, censor)
        (t_c, t_t), (e_c, e_t) = self._split(time), self._split(event)
        return self._reject(rowstats.logrank_z(t_c, e_c, t_t, e_t), None)


def simulate_power(
    design: Design,
    n_control: int,
    n_treatment: int | None = None,
    *,
    n_trials: int = 1000,
    seed: int = 0,
    dropout_mechanism: str | None = None,
    mar_strength: float = 1.0,
    cohort: Cohort | None = None,
) -> SimulationResult:
    """Simulate ``n_trials`` trials of ``design`` and return the share that rejected H0.

    Parameters
    ----------
    design : ContinuousDesign | BinaryDesign | TimeToEventDesign
        Effect, alpha, sidedness and dropout rate (``design.ratio`` only sets the default
        ``n_treatment``).
    n_control, n_treatment : int
        Subjects *enrolled* per arm (>= 2); dropout is simulated on top. ``n_treatment`` defaults
        to ``ceil(design.ratio * n_control)``.
    n_trials : int
        Number of virtual trials; the Monte Carlo SE shrinks as 1 / sqrt(n_trials).
    seed : int
        Seed of ``numpy.random.default_rng``; same seed and inputs give the same result.
    dropout_mechanism : str, optional
        ``"mcar"`` (default) or ``"mar"`` for continuous/binary; ``"exponential"`` for tte.
    mar_strength : float
        Log-odds of dropping out per SD of the baseline covariate, for ``"mar"``.
    cohort : Cohort, optional
        Source of baseline covariates; :class:`NormalCohort` by default.
    """
    endpoint = design.endpoint
    allowed = DROPOUT_MECHANISMS[endpoint]
    mechanism = dropout_mechanism or allowed[0]
    if mechanism not in allowed:
        raise ValueError(
            f"dropout_mechanism must be one of {list(allowed)} for the {endpoint} endpoint, got {mechanism!r}"
        )
    n_treatment = design.n_treatment_for(n_control) if n_treatment is None else n_treatment
    for name, value in (("n_control", n_control), ("n_treatment", n_treatment)):
        if int(value) != value or value < 2:
            raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
    if int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if not math.isfinite(mar_strength):
        raise ValueError(f"mar_strength must be finite, got {mar_strength!r}")
    cohort = NormalCohort() if cohort is None else cohort
    n_control, n_treatment, n_trials, seed = int(n_control), int(n_treatment), int(n_trials), int(seed)

    sim = _Simulator(design, n_control, n_treatment, mechanism, float(mar_strength), cohort)
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_ELEMENTS // sim.n)
    rejections = sum(sim.rejections(rng, min(chunk, n_trials - start)) for start in range(0, n_trials, chunk))
    power = rejections / n_trials
    inputs = {
        "endpoint": endpoint,
        "design": asdict(design),
        "n_control": n_control,
        "n_treatment": n_treatment,
        "n_trials": n_trials,
        "seed": seed,
        "dropout_mechanism": mechanism,
        "mar_strength": float(mar_strength),
        "cohort": cohort.describe(),
        "chunk_elements": CHUNK_ELEMENTS,
    }
    return SimulationResult(
        power, math.sqrt(power * (1 - power) / n_trials), n_trials, rejections, seed, inputs
    )


def simulate_from_inputs(inputs: Mapping[str, Any], cohort: Cohort | None = None) -> SimulationResult:
    """Rerun a simulation from its stored ``SimulationResult.inputs``.

    A resampled cohort is not stored with the result; pass the same one (checked by its sha256).
    """
    if inputs.get("chunk_elements", CHUNK_ELEMENTS) != CHUNK_ELEMENTS:
        raise ValueError("inputs were produced with another CHUNK_ELEMENTS; results would differ")
    stored = inputs["cohort"]
    if stored["kind"] == "resampled":
        if not isinstance(cohort, ResampledCohort) or cohort.describe() != stored:
            raise ValueError(f"cohort: pass the ResampledCohort the result was made with ({stored})")
    else:
        cohort = NormalCohort()
    design = DESIGNS[inputs["endpoint"]](**inputs["design"])
    return simulate_power(
        design,
        inputs["n_control"],
        inputs["n_treatment"],
        n_trials=inputs["n_trials"],
        seed=inputs["seed"],
        dropout_mechanism=inputs["dropout_mechanism"],
        mar_strength=inputs["mar_strength"],
        cohort=cohort,
    )
