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

A metric reported with a confidence interval (``utility_ratio``: a bootstrap interval) decides
only when the interval clears a cut-off (:meth:`Threshold.level_of_interval`): it passes when the
whole interval passes, fails when the whole interval fails, and warns ("not decisive") otherwise.

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

    def level_of_interval(self, low: float, high: float) -> Level:
        """Level of a metric known only to lie in [low, high]: ``"pass"`` when the whole interval
        passes, ``"fail"`` when the whole interval fails, else ``"warn"`` (the interval straddles a
        cut-off, so the metric cannot decide). NaN ends fail."""
        if math.isnan(low) or math.isnan(high):
            return "fail"
        worst, best = (low, high) if self.higher_is_better else (high, low)
        if self.level(worst) == "pass":
            return "pass"
        return "fail" if self.level(best) == "fail" else "warn"

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

Group = Literal["fidelity", "utility", "privacy", "other"]
GROUPS: tuple[Group, ...] = ("fidelity", "utility", "privacy", "other")


@dataclass(frozen=True)
class MetricInfo:
    """What a metric measures, for the report: its group, a one-line definition and its scale."""

    group: Group
    definition: str
    normalisation: str


METRIC_INFO: dict[str, MetricInfo] = {
    "wasserstein": MetricInfo(
        "fidelity", "Wasserstein-1 distance between the real and synthetic values of a numeric column",
        "divided by the real column's interquartile range (its range when the IQR is 0): 0.1 = a tenth "
        "of an IQR"),
    "ks_statistic": MetricInfo(
        "fidelity", "largest gap between the real and synthetic cumulative distributions (Kolmogorov-Smirnov)",
        "a share in [0, 1]; none needed"),
    "ks_complement": MetricInfo("fidelity", "1 - ks_statistic", "in [0, 1], 1 = identical distributions"),
    "tv_complement": MetricInfo(
        "fidelity", "1 - total variation distance of a categorical column's category shares (missing is "
        "a category)", "in [0, 1], 1 = identical shares"),
    "contingency_similarity": MetricInfo(
        "fidelity", "1 - total variation distance of the joint category shares of two categorical columns",
        "in [0, 1], 1 = identical joint shares"),
    "correlation_delta_mean": MetricInfo(
        "fidelity", "mean over numeric column pairs of |Pearson r real - Pearson r synthetic|",
        "correlation units, in [0, 2]"),
    "correlation_delta_max": MetricInfo(
        "fidelity", "largest |Pearson r real - Pearson r synthetic| over numeric column pairs",
        "correlation units, in [0, 2]"),
    "detection_auc": MetricInfo(
        "fidelity", "cross-validated ROC AUC of a gradient-boosting classifier telling real from synthetic rows",
        "0.5 = indistinguishable, 1 = always told apart (values below 0.5 count as 0.5)"),
    "utility_ratio": MetricInfo(
        "utility", "score of a model trained on synthetic rows / score of the same model trained on real "
        "rows, both tested on the real holdout", "a ratio, 1 = as useful as the real data; AUC for a "
        "categorical target, 1/RMSE for a numeric one; graded on its bootstrap interval"),
    "dcr_share_below_holdout_p5": MetricInfo(
        "privacy", "share of synthetic rows closer to a training record than the 5th percentile of the "
        "holdout rows' distances to the training records", "a share; 0.05 = like fresh real data"),
    "dcr_median_ratio": MetricInfo(
        "privacy", "median distance from synthetic rows to their closest training record / the same median "
        "for holdout rows", "a ratio, 1 = like fresh real data, below 1 = closer to the training records"),
    "nndr_median_ratio": MetricInfo(
        "privacy", "median nearest/second-nearest training-record distance ratio, synthetic / holdout",
        "a ratio, 1 = like fresh real data"),
    "exact_copy_share": MetricInfo(
        "privacy", "share of synthetic rows identical to a training record (encoded distance <= 1e-9)",
        "a share"),
    "mia_auc": MetricInfo(
        "privacy", "ROC AUC of a distance-based membership-inference attack telling training from holdout "
        "records", "0.5 = no risk, 1 = every training record given away"),
}
"""Group, definition and normalisation of every metric (distances: standardized encoding, see
:func:`models.evidence.encoding.describe_encoding`)."""


def metric_info(metric: str) -> MetricInfo:
    """:data:`METRIC_INFO` of ``metric``; a metric without an entry is in group "other"."""
    return METRIC_INFO.get(metric, MetricInfo("other", metric, ""))


DERIVED_METRICS = {"ks_complement": "ks_statistic"}
"""Metrics whose thresholds are the complement (1 - x) of another metric's (they repeat it)."""


def resolve_thresholds(overrides: Mapping[str, Any] | None = None) -> dict[str, Threshold]:
    """Defaults updated with a study's overrides, plus the derived metrics.

    ``overrides`` maps a metric name to a mapping with ``warn`` and/or ``fail`` (numbers) or to a
    :class:`Threshold`. Unknown metric names, unknown keys and cut-offs in the wrong order raise
    ValueError naming the metric.
    """
    resolved = dict(DEFAULT_THRESHOLDS)
    for metric, spec in (overrides or {}).items():
        if metric in DERIVED_METRICS:
            raise ValueError(
                f"threshold {metric!r} is derived from {DERIVED_METRICS[metric]!r} (1 - x); override that instead"
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
    for derived, source in DERIVED_METRICS.items():
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
