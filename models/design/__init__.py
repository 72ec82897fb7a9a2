"""Virtual trial designer: analytic and simulated power, sample size and power curves.

- :mod:`models.design.analytic` -- designs (:class:`ContinuousDesign`, :class:`BinaryDesign`,
  :class:`TimeToEventDesign`) with ``power(n)`` and ``sample_size(power)``; Schoenfeld events.
- :mod:`models.design.simulate` -- Monte Carlo power of virtual trials, vectorised across trials.
- :mod:`models.design.cohorts` -- baseline covariates: parametric or resampled from a table.
- :mod:`models.design.rowstats` -- t-test, ANCOVA, chi-square and log-rank statistics per row.
- :mod:`models.design.curves` / :mod:`models.design.plot` -- power curves and their PNG.
- :mod:`models.design.scenarios` -- ``data/designs/<study>.yaml`` -> curves + recommended N.

The names below are imported on first use (PEP 562), so ``trialsynth power`` loads neither pandas
nor matplotlib unless it draws a plot.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "models.design.analytic": ("BinaryDesign", "ContinuousDesign", "Design", "SampleSize", "TimeToEventDesign",
                               "inflate_for_dropout", "schoenfeld_events"),
    "models.design.cohorts": ("NormalCohort", "ResampledCohort"),
    "models.design.curves": ("power_curves",),
    "models.design.plot": ("plot_power_curves",),
    "models.design.scenarios": ("DesignResult", "load_design_file", "run_design_file"),
    "models.design.simulate": ("SimulationResult", "simulate_from_inputs", "simulate_power"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
