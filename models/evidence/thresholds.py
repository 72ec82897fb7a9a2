"""Pass / warn / fail thresholds of the evidence metrics.

Every metric has a direction and two cut-offs. For a metric where lower is better a value
``<= warn`` passes, ``<= fail`` warns and anything above ``fail`` fails; where higher is better a
value ``>= warn`` passes, ``>= fail`` warns and anything below ``fail`` fails. A value that could
not be computed (NaN) fails: evidence that cannot be checked is no evidence.

Defaults (:data:`DEFAULT_THRESHOLDS`), chosen so that independent draws from the real
distribution of a few hundred rows or more pass and a synthesizer that copies or clearly distorts
the data fails:

========================== ====== ====== ===== ==========================================================
metric                     better warn   fail  meaning
========================== ====== ====== ===== ==========================================================
wasserstein                lower  0.10   0.25  per numeric column: Wasserstein-1 distance real vs synthetic
                                               divided by the real column's IQR (its range when the IQR
                                               is 0, 1 when constant), i.e. in "IQR units"
ks_statistic               lower  0.10   0.20  per numeric column: two-sample Kolmogorov-Smirnov statistic
ks_complement              higher 0.90   0.80  1 - ks_statistic (derived: set ks_statistic to change it)
tv_complement              higher 0.90   0.80  per categorical column: 1 - total variation distance of the
                                               category frequencies (missing is a category)
correlation_delta_mean     lower  0.10   0.20  mean |Pearson r real - r synthetic| over numeric pairs
correlation_delta_max      lower  0.25   0.50  max of the same
contingency_similarity     higher 0.85   0.70  per categorical pair: 1 - total variation distance of the
                                               joint frequencies
detection_auc              lower  0.70   0.85  cross-validated ROC AUC of a gradient-boosting classifier
                                               telling real from synthetic rows (0.5 = indistinguishable)
utility_ratio              higher 0.90   0.75  train-synthetic-test-real score / train-real-test-real score
                                               (AUC for a categorical target, 1/RMSE for a numeric one)
dcr_share_below_holdout_p5 lower  0.10   0.20  share of synthetic rows closer to a training record than
                                               the 5th percentile of the holdout's distances (0.05 = like
                                               fresh real data)
dcr_median_ratio           higher 0.85   0.60  median distance to closest training record, synthetic rows /
                                               holdout rows (1 = like fresh real data)
nndr_median_ratio          higher 0.85   0.60  median nearest-neighbour distance ratio, synthetic / holdout
exact_copy_share           lower  0.01   0.05  share of synthetic rows identical to a training record
mia_auc                    lower  0.60   0.70  ROC AUC of a distance-based membership-inference attack
                                               telling training from holdout records (0.5 = no risk)
========================== ====== ====== ===== ==========================================================

A study overrides any of these with a mapping such as
``{"detection_auc": {"warn": 0.75, "fail": 0.9}}`` (one or both cut-offs), see
:func:`resolve_thresholds`. For tables made only of categorical or integer columns exact copies
happen by chance (the holdout's own share is reported next to it), so raise ``exact_copy_share``
there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

Level = Literal["pass", "warn", "fail"]
LEVELS: tuple[Level, ...] = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Threshold:
    """Cut-offs of one metric; ``level(value)`` maps a value to pass / warn / fail."""

    warn: float
    fail: float
    higher_is_better: bool

    def __post_init__(self) -> None:
        for name in ("warn", "fail"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"threshold {name} must be a finite number, got {value!r}")
        if self.higher_is_better and self.fail > self.warn:
            raise ValueError(f"higher is better, so fail ({self.fail}) must be <= warn ({self.warn})")
        if not self.higher_is_better and self.fail < self.warn:
            raise ValueError(f"lower is better, so fail ({self.fail}) must be >= warn ({self.warn})")

    def level(self, value: float) -> Level:
        """``"pass"``, ``"warn"`` or ``"fail"`` for ``value`` (NaN fails)."""
        if math.isnan(value):
            return "fail"
        sign = -1.0 if self.higher_is_better else 1.0
        if sign * value <= sign * self.warn:
            return "pass"
        return "warn" if sign * value <= sign * self.fail else "fail"

    def describe(self) -> str:
        """E.g. ``"pass <= 0.1, fail > 0.25"``."""
        if self.higher_is_better:
            return f"pass >= {self.warn:g}, fail < {self.fail:g}"
        return f"pass <= {self.warn:g}, fail > {self.fail:g}"


DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "wasserstein": Threshold(0.10, 0.25, higher_is_better=False),
    "ks_statistic": Threshold(0.10, 0.20, higher_is_better=False),
    "tv_complement": Threshold(0.90, 0.80, higher_is_better=True),
    "correlation_delta_mean": Threshold(0.10, 0.20, higher_is_better=False),
    "correlation_delta_max": Threshold(0.25, 0.50, higher_is_better=False),
    "contingency_similarity": Threshold(0.85, 0.70, higher_is_better=True),
    "detection_auc": Threshold(0.70, 0.85, higher_is_better=False),
    "utility_ratio": Threshold(0.90, 0.75, higher_is_better=True),
    "dcr_share_below_holdout_p5": Threshold(0.10, 0.20, higher_is_better=False),
    "dcr_median_ratio": Threshold(0.85, 0.60, higher_is_better=True),
    "nndr_median_ratio": Threshold(0.85, 0.60, higher_is_better=True),
    "exact_copy_share": Threshold(0.01, 0.05, higher_is_better=False),
    "mia_auc": Threshold(0.60, 0.70, higher_is_better=False),
}
"""Default thresholds of the configurable metrics (see the module docstring)."""

# Metrics whose thresholds are the complement (1 - x) of another metric's.
_COMPLEMENTS = {"ks_complement": "ks_statistic"}


def resolve_thresholds(overrides: Mapping[str, Any] | None = None) -> dict[str, Threshold]:
    """Defaults updated with a study's overrides, plus the derived metrics.

    ``overrides`` maps a metric name to a mapping with ``warn`` and/or ``fail`` (numbers) or to a
    :class:`Threshold`. Unknown metric names, unknown keys and cut-offs in the wrong order raise
    ValueError naming the metric.
    """
    resolved = dict(DEFAULT_THRESHOLDS)
    for metric, spec in (overrides or {}).items():
        if metric in _COMPLEMENTS:
            raise ValueError(
                f"threshold {metric!r} is derived from {_COMPLEMENTS[metric]!r} (1 - x); override that instead"
            )
        if metric not in resolved:
            raise ValueError(f"unknown evidence metric {metric!r} in thresholds; known: {sorted(resolved)}")
        if isinstance(spec, Threshold):
            resolved[metric] = spec
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"threshold {metric!r} must be a mapping with warn and/or fail, got {spec!r}")
        bad_keys = set(spec) - {"warn", "fail"}
        if bad_keys:
            raise ValueError(f"threshold {metric!r} has unknown keys {sorted(bad_keys)}; allowed: warn, fail")
        try:
            resolved[metric] = replace(resolved[metric], **spec)
        except ValueError as exc:
            raise ValueError(f"threshold {metric!r}: {exc}") from None
    for derived, source in _COMPLEMENTS.items():
        base = resolved[source]
        resolved[derived] = Threshold(1.0 - base.warn, 1.0 - base.fail, not base.higher_is_better)
    return resolved


def worst_level(levels: Any) -> Level:
    """The most severe of an iterable of levels (``"pass"`` when empty)."""
    present = set(levels)
    unknown = present - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown levels {sorted(unknown)}; expected {LEVELS}")
    return max(present, key=LEVELS.index, default="pass")
