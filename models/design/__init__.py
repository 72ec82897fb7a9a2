"""Virtual trial designer: analytic and simulated power, sample size and power curves.

- :mod:`models.design.analytic` -- designs (:class:`ContinuousDesign`, :class:`BinaryDesign`,
  :class:`TimeToEventDesign`) with ``power(n)`` and ``sample_size(power)``; Schoenfeld events.
- :mod:`models.design.simulate` -- Monte Carlo power of virtual trials, vectorised across trials.
- :mod:`models.design.cohorts` -- baseline covariates: parametric or resampled from a table.
- :mod:`models.design.rowstats` -- t-test, ANCOVA, chi-square and log-rank statistics per row.
- :mod:`models.design.curves` / :mod:`models.design.plot` -- power curves and their PNG.
- :mod:`models.design.scenarios` -- ``data/designs/<study>.yaml`` -> curves + recommended N.
"""

from models.design.analytic import (
    BinaryDesign,
    ContinuousDesign,
    Design,
    SampleSize,
    TimeToEventDesign,
    inflate_for_dropout,
    schoenfeld_events,
)
from models.design.cohorts import NormalCohort, ResampledCohort
from models.design.curves import power_curves
from models.design.plot import plot_power_curves
from models.design.scenarios import DesignResult, load_design_file, run_design_file
from models.design.simulate import SimulationResult, simulate_from_inputs, simulate_power

__all__ = [
    "BinaryDesign",
    "ContinuousDesign",
    "Design",
    "DesignResult",
    "NormalCohort",
    "ResampledCohort",
    "SampleSize",
    "SimulationResult",
    "TimeToEventDesign",
    "inflate_for_dropout",
    "load_design_file",
    "plot_power_curves",
    "power_curves",
    "run_design_file",
    "schoenfeld_events",
    "simulate_from_inputs",
    "simulate_power",
]
