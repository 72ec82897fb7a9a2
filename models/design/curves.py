"""Power curves over N and over effect size, analytic and simulated, as one long DataFrame.

Curve columns: ``endpoint``, ``axis`` (``"n_per_arm"`` or ``"effect"``), ``x``, ``power``, ``method``
(``"analytic"`` or ``"simulation"``), ``mc_se`` (NaN for analytic rows).

- ``axis="n_per_arm"``: x = subjects *enrolled* in the control arm (treatment arm = ratio * x);
  analytic power is evaluated at the expected analysable x (1 - dropout), simulations enrol x and
  simulate the dropout.
- ``axis="effect"``: x = the design's effect (mean difference, risk difference, or hazard ratio)
  at the recommended enrolment, from a quarter of the design effect to twice it (log scale for
  hazard ratios; risk differences limited to proportions inside (0, 1)).

Simulated points all use the same seed (common random numbers), so the simulated curve is smooth
and any point can be rerun from the seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from models.design.analytic import (
    MAX_STANDARDIZED_EFFECT,
    BinaryDesign,
    ContinuousDesign,
    Design,
    SampleSize,
    TimeToEventDesign,
)
from models.design.simulate import simulate_power

CURVE_COLUMNS = ["endpoint", "axis", "x", "power", "method", "mc_se"]
_MULTIPLIERS = np.linspace(0.25, 2.0, 36)


def effect_grid(design: Design, multipliers: np.ndarray = _MULTIPLIERS) -> np.ndarray:
    """Effects around the design's effect: ``multiplier * effect`` (``hr ** multiplier`` for tte)."""
    if isinstance(design, TimeToEventDesign):
        return design.hr**multipliers
    effects = design.effect * multipliers
    if isinstance(design, BinaryDesign):
        p = design.p_control + effects
        effects = effects[(p > 1e-3) & (p < 1 - 1e-3)]
    if isinstance(design, ContinuousDesign):  # a design's own limit (ContinuousDesign)
        per_unit = design.standardized_effect / abs(design.effect)
        effects = effects[np.abs(effects) * per_unit <= MAX_STANDARDIZED_EFFECT]
    return effects


def n_grid(design: Design, enrol_control: int, points: int = 36) -> np.ndarray:
    """Integer control-arm enrolments from about a quarter to twice ``enrol_control`` (>= 3 analysable)."""
    low = max(math.ceil(3 / (1 - design.dropout)), round(0.25 * enrol_control))
    return np.unique(np.linspace(low, max(2 * enrol_control, low + 1), points).round().astype(int))


def _subset(values: np.ndarray, points: int) -> np.ndarray:
    """``points`` values spread evenly over ``values`` (all of them if fewer)."""
    if points >= values.size:
        return values
    return values[np.unique(np.linspace(0, values.size - 1, points).round().astype(int))]


def power_curves(
    design: Design,
    sample_size: SampleSize,
    *,
    n_trials: int = 0,
    sim_points: int = 7,
    seed: int = 0,
    **simulation: Any,
) -> pd.DataFrame:
    """Analytic (and, when ``n_trials > 0``, simulated) power curves of ``design``.

    ``sample_size`` (from ``design.sample_size``) centres the grids. ``sim_points`` simulated
    points per axis with ``n_trials`` trials each; ``simulation`` goes to :func:`simulate_power`.
    """
    keep = 1 - design.dropout
    ns = n_grid(design, sample_size.enrol_control)
    effects = effect_grid(design)
    rows = [
        ("n_per_arm", ns, design.power(ns * keep)),
        (
            "effect",
            effects,
            [float(design.with_effect(e).power(sample_size.enrol_control * keep)) for e in effects],
        ),
    ]
    frames = [
        pd.DataFrame(
            {"axis": axis, "x": np.asarray(x, float), "power": np.asarray(p, float), "method": "analytic"}
        )
        for axis, x, p in rows
    ]
    if n_trials > 0:
        sims = [
            ("n_per_arm", n, simulate_power(design, int(n), n_trials=n_trials, seed=seed, **simulation))
            for n in _subset(ns, sim_points)
        ]
        sims += [
            (
                "effect",
                e,
                simulate_power(
                    design.with_effect(float(e)),
                    sample_size.enrol_control,
                    sample_size.enrol_treatment,
                    n_trials=n_trials,
                    seed=seed,
                    **simulation,
                ),
            )
            for e in _subset(effects, sim_points)
        ]
        frames.append(
            pd.DataFrame(
                {
                    "axis": [a for a, _, _ in sims],
                    "x": [float(x) for _, x, _ in sims],
                    "power": [r.power for _, _, r in sims],
                    "method": "simulation",
                    "mc_se": [r.mc_se for _, _, r in sims],
                }
            )
        )
    curves = pd.concat(frames, ignore_index=True)
    curves.insert(0, "endpoint", design.endpoint)
    return curves.reindex(columns=CURVE_COLUMNS).astype({"x": float, "power": float, "mc_se": float})
