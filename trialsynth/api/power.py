"""``POST /simulate/v1/power``: the request, and the report built from :mod:`models.design`.

Analytic answers (``simulations: 0``) are computed in the request and cached by the canonical request
hash; simulated power (``simulations > 0``) runs as the Dagster job ``api_power_simulation``
(:mod:`orchestration.api_jobs`), whose op calls :func:`power_report` with the same request.

Bounds keep every answer finite and quick: the smallest detectable effect is 1 % of an SD (continuous),
a risk difference of 0.005 (binary) or |log HR| >= 0.01 (tte), so N per arm stays below about 1.3
million; a simulation may draw at most ``MAX_SIMULATED_CELLS`` subject-trials in all.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import Field, StrictBool, model_validator

from models.design.curves import power_curves
from models.design.simulate import simulate_power
from trialsynth.api.schemas import StrictBody
from trialsynth.commands.power import build_design
from trialsynth.names import SAFE_NAME

MAX_SIMULATED_CELLS = 2_000_000_000


class PowerRequest(StrictBody):
    """A two-arm design: endpoint, effect and assumptions (every field is echoed in the answer)."""

    endpoint: Literal["continuous", "binary", "tte"]
    effect: float | None = Field(None, description="mean difference (continuous, in outcome units), risk difference "
                                 "p_treatment - p_control (binary) or hazard ratio (tte)")
    sigma: float = Field(1.0, gt=0, le=1e6, description="outcome SD (continuous); 1 makes effect Cohen's d")
    alpha: float = Field(0.05, ge=1e-6, lt=0.5)
    power: float = Field(0.8, ge=0.5, le=0.999, description="target power")
    sided: Literal[1, 2] = 2
    allocation: float = Field(1.0, ge=0.1, le=10, description="n_treatment / n_control")
    dropout: float = Field(0.0, ge=0, le=0.9, description="share lost; enrolment = ceil(n / (1 - dropout)) per arm")
    analysis: Literal["ttest", "ancova"] = "ttest"
    baseline_correlation: float = Field(0.0, ge=-0.99, le=0.99, description="outcome-baseline correlation (ANCOVA)")
    p_control: float | None = Field(None, ge=0.001, le=0.999, description="response proportion, control (binary)")
    p_treatment: float | None = Field(None, ge=0.001, le=0.999, description="response proportion, treatment (binary)")
    method: Literal["pooled", "arcsine"] = "pooled"
    continuity_correction: StrictBool = False
    hr: float | None = Field(None, ge=0.01, le=100, description="hazard ratio treatment / control (tte)")
    control_median: float = Field(12.0, gt=0, le=1e4, description="control median time to event (tte)")
    accrual: float = Field(12.0, ge=0, le=1e4, description="uniform accrual period (tte, same time unit)")
    follow_up: float = Field(12.0, gt=0, le=1e4, description="follow-up after the last subject enters (tte)")
    simulations: int = Field(0, ge=0, le=20000, description="virtual trials per simulated point; "
                             "0 = analytic only (answered at once), > 0 = a simulation job")
    curve_points: int = Field(7, ge=2, le=15, description="simulated points per curve axis")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    study: str | None = Field(None, pattern=SAFE_NAME.pattern, description="study the simulation job is filed under")

    @model_validator(mode="after")
    def _effect_given(self) -> PowerRequest:
        if self.endpoint == "continuous":
            if self.effect is None:
                raise ValueError("effect: required for the continuous endpoint")
            if abs(self.effect) < 0.01 * self.sigma:
                raise ValueError("effect: |effect| must be at least 1% of sigma")
        elif self.endpoint == "binary":
            if self.p_control is None:
                raise ValueError("p_control: required for the binary endpoint")
            if (self.p_treatment is None) == (self.effect is None):
                raise ValueError("p_treatment: give p_treatment or effect (the risk difference), not both or neither")
            p_t = self.p_treatment if self.p_treatment is not None else self.p_control + self.effect
            if not 0.001 <= p_t <= 0.999 or abs(p_t - self.p_control) < 0.005:
                raise ValueError("p_treatment: must be in [0.001, 0.999] and differ from p_control by >= 0.005")
        else:
            if (self.hr is None) == (self.effect is None):
                raise ValueError("hr: give hr or effect (the hazard ratio), not both or neither")
            hr = self.hr if self.hr is not None else self.effect
            if not 0.01 <= hr <= 100 or abs(math.log(hr)) < 0.01:
                raise ValueError("hr: must be in [0.01, 100] with |log hr| >= 0.01")
        return self


def _design(req: PowerRequest):
    args = SimpleNamespace(**req.model_dump(), sd=req.sigma, ratio=req.allocation)
    return build_design(args)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def power_report(req: PowerRequest) -> dict[str, Any]:
    """Recommended N per arm, power curves (analytic, and simulated when ``simulations > 0``), the seed
    and every input. Raises ValueError naming the field for a design that cannot be computed."""
    design = _design(req)
    size = design.sample_size(req.power)
    recommended: dict[str, Any] = {
        "n_per_arm_control": size.n_control, "n_per_arm_treatment": size.n_treatment, "total_n": size.total_n,
        "enrol_per_arm_control": size.enrol_control, "enrol_per_arm_treatment": size.enrol_treatment,
        "total_enrol": size.total_enrol, "events": size.events, "analytic_power": float(size.power),
    }
    if req.simulations:
        _check_cells(req, size)
        sim = simulate_power(design, size.enrol_control, size.enrol_treatment, n_trials=req.simulations, seed=req.seed)
        recommended |= {"simulated_power": sim.power, "simulated_mc_se": sim.mc_se}
    curves = power_curves(design, size, n_trials=req.simulations, sim_points=req.curve_points, seed=req.seed)
    return {
        "inputs": req.model_dump(mode="json"),
        "method": "simulation" if req.simulations else "analytic",
        "seed": req.seed,
        "recommended": recommended,
        "curve": [{k: _finite(v) for k, v in row.items()} for row in curves.drop(columns="endpoint").to_dict("records")],
    }


def check_simulation_size(req: PowerRequest) -> None:
    """Raise ValueError (naming ``simulations``) for a simulation too large to run, before it is queued."""
    _check_cells(req, _design(req).sample_size(req.power))


def _check_cells(req: PowerRequest, size) -> None:
    # simulated points on two axes plus the recommended N; an effect-axis point enrols about total_enrol
    cells = req.simulations * size.total_enrol * 2 * 2 * (req.curve_points + 1)
    if cells > MAX_SIMULATED_CELLS:
        raise ValueError(f"simulations: {req.simulations} trials at N = {size.total_enrol} would draw {cells:.3g} "
                         f"subject-trials (limit {MAX_SIMULATED_CELLS:.3g}); ask for fewer simulations")
