"""PNG of power curves with matplotlib's Agg renderer.

A bare ``matplotlib.figure.Figure`` renders through Agg without pyplot, so no display is needed
and the caller's global matplotlib backend is left alone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

_X_LABELS = {"n_per_arm": "subjects enrolled, control arm", "effect": "effect"}
_EFFECT_LABELS = {"continuous": "mean difference", "binary": "risk difference", "tte": "hazard ratio"}


def plot_power_curves(
    curves: pd.DataFrame,
    path: str | Path,
    *,
    target_power: float | None = None,
    enrol_control: int | None = None,
    effect: float | None = None,
    title: str = "",
) -> Path:
    """Draw one scenario's curves (columns as :data:`models.design.curves.CURVE_COLUMNS`) into ``path``.

    Two panels, power vs N and power vs effect: analytic lines, simulated points with 95% Monte
    Carlo intervals (+-1.96 mc_se). Optional reference lines at ``target_power``, the recommended
    ``enrol_control`` and the design ``effect``. Returns the written path.
    """
    path = Path(path)
    endpoint = str(curves["endpoint"].iloc[0]) if len(curves) else ""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, axis, marker in zip(axes, ("n_per_arm", "effect"), (enrol_control, effect), strict=True):
        part = curves[curves["axis"] == axis].sort_values("x")
        analytic = part[part["method"] == "analytic"]
        simulated = part[part["method"] == "simulation"]
        ax.plot(analytic["x"], analytic["power"], color="tab:blue", label="analytic")
        if len(simulated):
            ax.errorbar(
                simulated["x"],
                simulated["power"],
                yerr=1.96 * simulated["mc_se"],
                fmt="o",
                color="tab:orange",
                capsize=3,
                label="simulated (95% MC interval)",
            )
        if target_power is not None:
            ax.axhline(
                target_power, color="grey", linestyle="--", linewidth=1, label=f"target {target_power:g}"
            )
        if marker is not None:
            ax.axvline(marker, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(_EFFECT_LABELS.get(endpoint, "effect") if axis == "effect" else _X_LABELS[axis])
        ax.set_ylabel("power")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title or f"power curves ({endpoint})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
