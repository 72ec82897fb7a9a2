"""A study's design scenarios (``data/designs/<study>.yaml``) -> power curves and recommended N.

YAML schema (unknown keys are errors; errors name the file and the key)::

    study: ACME-001                 # required
    description: free text          # optional
    simulation:                     # optional
      n_trials: 1000                # virtual trials per simulated point (0 = analytic only)
      curve_points: 7               # simulated points per curve axis
    defaults:                       # optional; applied to every scenario that omits the key
      alpha: 0.05                   # any of: alpha, sided, power, ratio, dropout
    scenarios:                      # required, at least one; names unique
      - name: primary_change        # required; letters, digits, _ . - (used in file names)
        endpoint: continuous        # continuous | binary | tte
        # common keys (defaults shown)
        alpha: 0.05                 # in (0, 1)
        sided: 2                    # 1 or 2
        power: 0.8                  # target power, in (0, 1)
        ratio: 1.0                  # n_treatment / n_control, > 0
        dropout: 0.0                # in [0, 1); enrolment = ceil(n / (1 - dropout)) per arm
        mar_strength: 1.0           # log-odds of dropout per baseline SD (dropout_mechanism: mar)
        baseline:                   # optional: resample the baseline covariate from a table
          table: synthetic_cohort   #   name of a DataFrame passed in ``baseline_tables``
          column: BASE              #   numeric column
        # continuous
        effect: -3.0                # mean difference treatment - control, outcome units, != 0
        sd: 8.0                     # > 0 (default 1: effect is Cohen's d)
        analysis: ttest             # ttest | ancova
        baseline_correlation: 0.0   # outcome-baseline correlation in (-1, 1)
        dropout_mechanism: mcar     # mcar | mar
        # binary
        p_control: 0.30             # in (0, 1)
        p_treatment: 0.45           # in (0, 1), != p_control
        method: pooled              # pooled | arcsine (analytic formula; simulation uses chi-square)
        continuity_correction: false
        dropout_mechanism: mcar     # mcar | mar
        # tte (time units are free but shared: months, weeks, ...)
        hr: 0.7                     # hazard ratio treatment / control, > 0, != 1
        control_median: 18          # median time to event, control arm
        accrual: 12                 # uniform accrual period
        follow_up: 12               # follow-up after the last subject enters

Every simulation of a scenario uses that scenario's seed (common random numbers across the curve),
derived from the caller's seed and the scenario name, and reported in ``recommendations.seed``.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.design.analytic import (
    ANALYSABLE_LABEL,
    ENROL_LABEL,
    BinaryDesign,
    ContinuousDesign,
    Design,
    SampleSize,
    TimeToEventDesign,
)
from models.design.cohorts import Cohort, ResampledCohort
from models.design.curves import CURVE_COLUMNS, power_curves
from models.design.plot import plot_power_curves
from models.design.simulate import simulate_power

RECOMMENDATION_COLUMNS = [
    "scenario", "endpoint", "effect", "alpha", "sided", "target_power", "ratio", "dropout",
    "n_per_arm_control", "n_per_arm_treatment", "total_n", "enrol_control", "enrol_treatment", "total_enrol",
    "events", "analytic_power", "simulated_power", "simulated_mc_se", "seed",
]  # fmt: skip
SCENARIO_CURVE_COLUMNS = ["scenario", *CURVE_COLUMNS]
RECOMMENDATION_LABELS = {
    "scenario": "scenario", "endpoint": "endpoint", "effect": "effect",
    "n_per_arm_control": f"{ANALYSABLE_LABEL}, control", "n_per_arm_treatment": f"{ANALYSABLE_LABEL}, treatment",
    "enrol_control": f"{ENROL_LABEL}, control", "enrol_treatment": f"{ENROL_LABEL}, treatment",
    "total_enrol": "N to enrol, total", "dropout": "dropout", "events": "events required",
    "analytic_power": "analytic power", "simulated_power": "simulated power (N to enrol)",
}
"""Display names of the recommendation columns: the labels ``trialsynth power`` prints."""
log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Baseline(_Strict):
    table: str
    column: str


class _Defaults(_Strict):
    alpha: float | None = None
    sided: Literal[1, 2] | None = None
    power: float | None = None
    ratio: float | None = None
    dropout: float | None = None


_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # used in file names: no spaces or slashes


class _ScenarioBase(_Strict):
    name: str = Field(pattern=_NAME)
    alpha: float = 0.05
    sided: Literal[1, 2] = 2
    power: float = 0.8
    ratio: float = 1.0
    dropout: float = 0.0
    mar_strength: float = 1.0
    baseline: _Baseline | None = None


class _Continuous(_ScenarioBase):
    endpoint: Literal["continuous"]
    effect: float
    sd: float = 1.0
    analysis: Literal["ttest", "ancova"] = "ttest"
    baseline_correlation: float = 0.0
    dropout_mechanism: Literal["mcar", "mar"] = "mcar"


class _Binary(_ScenarioBase):
    endpoint: Literal["binary"]
    p_control: float
    p_treatment: float
    method: Literal["pooled", "arcsine"] = "pooled"
    continuity_correction: bool = False
    dropout_mechanism: Literal["mcar", "mar"] = "mcar"


class _Tte(_ScenarioBase):
    endpoint: Literal["tte"]
    hr: float
    control_median: float
    accrual: float
    follow_up: float


class _Simulation(_Strict):
    n_trials: int = Field(1000, ge=0)
    curve_points: int = Field(7, ge=0)


class _DesignFile(_Strict):
    study: str = Field(pattern=_NAME)
    description: str = ""
    simulation: _Simulation = _Simulation()
    defaults: _Defaults = _Defaults()
    scenarios: list[Annotated[_Continuous | _Binary | _Tte, Field(discriminator="endpoint")]] = Field(
        min_length=1
    )


_DESIGN_KEYS = {
    "continuous": (ContinuousDesign, ("effect", "sd", "analysis", "baseline_correlation")),
    "binary": (BinaryDesign, ("p_control", "p_treatment", "method", "continuity_correction")),
    "tte": (TimeToEventDesign, ("hr", "control_median", "accrual", "follow_up")),
}


@dataclass(frozen=True)
class Scenario:
    """One validated scenario: its design, target power and simulation options."""

    name: str
    design: Design
    target_power: float
    simulation: dict[str, Any] = field(default_factory=dict)  # keyword arguments of simulate_power


@dataclass(frozen=True)
class DesignFile:
    """A validated design file."""

    path: Path
    study: str
    description: str
    n_trials: int
    curve_points: int
    scenarios: list[Scenario]


@dataclass(frozen=True)
class DesignResult:
    """Output of :func:`run_design_file`.

    ``curves``: columns ``SCENARIO_CURVE_COLUMNS`` (scenario, endpoint, axis, x, power, method, mc_se).
    ``recommendations``: one row per scenario, columns ``RECOMMENDATION_COLUMNS``; n_per_arm_* and
    total_n are analysable subjects, enrol_* and total_enrol after dropout inflation, events only for tte.
    """

    design_file: DesignFile
    seed: int
    curves: pd.DataFrame
    recommendations: pd.DataFrame

    def write_plots(self, out_dir: str | Path) -> list[Path]:
        """One PNG per scenario, ``<out_dir>/<study>_<scenario>.png``; returns the paths."""
        paths = []
        for scenario in self.design_file.scenarios:
            rec = self.recommendations.set_index("scenario").loc[scenario.name]
            paths.append(
                plot_power_curves(
                    self.curves[self.curves["scenario"] == scenario.name],
                    Path(out_dir) / f"{self.design_file.study}_{scenario.name}.png",
                    target_power=scenario.target_power,
                    enrol_control=int(rec["enrol_control"]),
                    effect=float(rec["effect"]),
                    title=f"{self.design_file.study} / {scenario.name} ({scenario.design.endpoint})",
                )
            )
        return paths


def labelled_recommendations(recommendations: pd.DataFrame) -> pd.DataFrame:
    """The recommendation columns people read, under :data:`RECOMMENDATION_LABELS` (analysable N and N
    to enrol per arm, both labelled as the CLI labels them)."""
    return recommendations[list(RECOMMENDATION_LABELS)].rename(columns=RECOMMENDATION_LABELS)


def _loc(loc: tuple[Any, ...]) -> str:
    """('scenarios', 0, 'tte', 'hr') -> 'scenarios[0].hr' (drops pydantic's union tag)."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 2 and loc[0] == "scenarios" and part in _DESIGN_KEYS:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def _validation_error(path: Path, exc: ValidationError, prefix: str = "") -> ValueError:
    problems = "; ".join(f"{prefix}{_loc(tuple(e['loc']))}: {e['msg']}" for e in exc.errors())
    return ValueError(f"{path}: {problems}")


def _scenario(raw: _Continuous | _Binary | _Tte, cohort: Cohort | None) -> Scenario:
    cls, keys = _DESIGN_KEYS[raw.endpoint]
    if cohort is not None and isinstance(raw, _Tte):
        raise ValueError("baseline: the tte simulation uses no baseline covariate")
    design = cls(
        alpha=raw.alpha,
        sided=raw.sided,
        ratio=raw.ratio,
        dropout=raw.dropout,
        **{k: getattr(raw, k) for k in keys},
    )
    simulation: dict[str, Any] = {"mar_strength": raw.mar_strength, "cohort": cohort}
    if not isinstance(raw, _Tte):
        simulation["dropout_mechanism"] = raw.dropout_mechanism
    return Scenario(raw.name, design, raw.power, simulation)


def load_design_file(
    path: str | Path, baseline_tables: Mapping[str, pd.DataFrame] | None = None
) -> DesignFile:
    """Read and validate a design YAML file (schema in the module docstring).

    ``baseline_tables`` maps the names used by ``baseline.table`` to DataFrames. Raises
    FileNotFoundError for a missing file and ValueError naming the file and key for bad content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"design file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with keys study, scenarios, ... at the top level")
    try:
        defaults = _Defaults.model_validate(raw.get("defaults") or {}).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise _validation_error(path, exc, "defaults.") from exc
    scenarios = raw.get("scenarios")
    if isinstance(scenarios, list):
        raw = {**raw, "scenarios": [{**defaults, **s} if isinstance(s, dict) else s for s in scenarios]}
    try:
        spec = _DesignFile.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(path, exc) from exc

    tables = dict(baseline_tables or {})
    built, seen = [], set()
    for i, s in enumerate(spec.scenarios):
        where = f"{path}: scenarios[{i}] ({s.name!r})"
        if s.name in seen:
            raise ValueError(f"{where}.name: duplicate scenario name")
        seen.add(s.name)
        cohort = None
        if s.baseline is not None:
            if s.baseline.table not in tables:
                raise ValueError(
                    f"{where}.baseline.table: no table {s.baseline.table!r} given (have {sorted(tables)})"
                )
            try:
                cohort = ResampledCohort.from_table(tables[s.baseline.table], s.baseline.column)
            except ValueError as exc:
                raise ValueError(f"{where}.baseline.column: {exc}") from exc
        try:
            built.append(_scenario(s, cohort))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
    return DesignFile(
        path, spec.study, spec.description, spec.simulation.n_trials, spec.simulation.curve_points, built
    )


def scenario_seed(seed: int, name: str) -> int:
    """Seed of one scenario: independent of the scenario's position in the file."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0])


def _recommendation(scenario: Scenario, size: SampleSize, n_trials: int, seed: int) -> dict[str, Any]:
    design = scenario.design
    sim = (
        simulate_power(
            design,
            size.enrol_control,
            size.enrol_treatment,
            n_trials=n_trials,
            seed=seed,
            **scenario.simulation,
        )
        if n_trials
        else None
    )
    return {
        "scenario": scenario.name,
        "endpoint": design.endpoint,
        "effect": float(design.effect),
        "alpha": design.alpha,
        "sided": design.sided,
        "target_power": scenario.target_power,
        "ratio": float(design.ratio),
        "dropout": design.dropout,
        "n_per_arm_control": size.n_control,
        "n_per_arm_treatment": size.n_treatment,
        "total_n": size.total_n,
        "enrol_control": size.enrol_control,
        "enrol_treatment": size.enrol_treatment,
        "total_enrol": size.total_enrol,
        "events": size.events,
        "analytic_power": size.power,
        "simulated_power": sim.power if sim else np.nan,
        "simulated_mc_se": sim.mc_se if sim else np.nan,
        "seed": seed,
    }


def run_design_file(
    path: str | Path,
    seed: int,
    *,
    baseline_tables: Mapping[str, pd.DataFrame] | None = None,
    n_trials: int | None = None,
) -> DesignResult:
    """Validate ``path`` and compute every scenario's recommended N and power curves.

    ``n_trials`` overrides the file's ``simulation.n_trials`` (0 = analytic only).
    """
    spec = load_design_file(path, baseline_tables)
    n_trials = spec.n_trials if n_trials is None else int(n_trials)
    curves, recs = [], []
    for i, scenario in enumerate(spec.scenarios, 1):
        log.info(
            "%s: scenario %d/%d %s (%d trials per point)",
            spec.study,
            i,
            len(spec.scenarios),
            scenario.name,
            n_trials,
        )
        s_seed = scenario_seed(seed, scenario.name)
        size = scenario.design.sample_size(scenario.target_power)
        recs.append(_recommendation(scenario, size, n_trials, s_seed))
        curve = power_curves(
            scenario.design,
            size,
            n_trials=n_trials,
            sim_points=spec.curve_points,
            seed=s_seed,
            **scenario.simulation,
        )
        curves.append(curve.assign(scenario=scenario.name))
    recommendations = pd.DataFrame(recs, columns=RECOMMENDATION_COLUMNS).astype(
        {"events": "Int64", "seed": "int64"}
    )
    return DesignResult(
        spec, int(seed), pd.concat(curves, ignore_index=True)[SCENARIO_CURVE_COLUMNS], recommendations
    )
