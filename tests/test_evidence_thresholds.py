"""Thresholds: levels at the boundaries, per-study overrides and their validation."""

from __future__ import annotations

import math

import pytest

from models.evidence.thresholds import DEFAULT_THRESHOLDS, Threshold, resolve_thresholds, worst_level


@pytest.mark.parametrize(
    ("value", "expected"), [(0.0, "pass"), (0.1, "pass"), (0.15, "warn"), (0.2, "warn"), (0.21, "fail")]
)
def test_lower_is_better_levels(value: float, expected: str) -> None:
    assert Threshold(0.1, 0.2, higher_is_better=False).level(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(1.0, "pass"), (0.9, "pass"), (0.85, "warn"), (0.8, "warn"), (0.79, "fail")]
)
def test_higher_is_better_levels(value: float, expected: str) -> None:
    assert Threshold(0.9, 0.8, higher_is_better=True).level(value) == expected


def test_a_metric_that_could_not_be_computed_fails() -> None:
    assert Threshold(0.1, 0.2, higher_is_better=False).level(math.nan) == "fail"
    assert Threshold(0.9, 0.8, higher_is_better=True).level(math.inf) == "pass"


def test_cut_offs_in_the_wrong_order_are_rejected() -> None:
    with pytest.raises(ValueError, match="fail .* must be >= warn"):
        Threshold(0.3, 0.2, higher_is_better=False)
    with pytest.raises(ValueError, match="fail .* must be <= warn"):
        Threshold(0.8, 0.9, higher_is_better=True)
    with pytest.raises(ValueError, match="finite number"):
        Threshold(math.nan, 0.2, higher_is_better=False)


def test_overrides_replace_one_or_both_cut_offs_and_keep_the_rest() -> None:
    resolved = resolve_thresholds(
        {"detection_auc": {"fail": 0.95}, "wasserstein": {"warn": 0.05, "fail": 0.1}}
    )
    assert resolved["detection_auc"] == Threshold(DEFAULT_THRESHOLDS["detection_auc"].warn, 0.95, False)
    assert (resolved["wasserstein"].warn, resolved["wasserstein"].fail) == (0.05, 0.1)
    assert resolved["mia_auc"] == DEFAULT_THRESHOLDS["mia_auc"]


def test_ks_complement_follows_the_ks_statistic_override() -> None:
    resolved = resolve_thresholds({"ks_statistic": {"warn": 0.05, "fail": 0.3}})
    complement = resolved["ks_complement"]
    assert complement.higher_is_better
    assert (complement.warn, complement.fail) == pytest.approx((0.95, 0.7))
    for ks in (0.01, 0.1, 0.5):  # both views of the same KS always agree
        assert complement.level(1 - ks) == resolved["ks_statistic"].level(ks)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"detecton_auc": {"warn": 0.7}}, "unknown evidence metric 'detecton_auc'"),
        ({"ks_complement": {"warn": 0.9}}, "derived from 'ks_statistic'"),
        ({"mia_auc": {"warn": 0.6, "critical": 0.9}}, "unknown keys \\['critical'\\]"),
        ({"mia_auc": 0.6}, "must be a mapping"),
        ({"mia_auc": {"warn": 0.8}}, "threshold 'mia_auc': lower is better"),
        ({"mia_auc": {"warn": "high"}}, "finite number"),
    ],
)
def test_bad_overrides_raise_clear_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_thresholds(overrides)


def test_worst_level() -> None:
    assert worst_level([]) == "pass"
    assert worst_level(["pass", "warn", "pass"]) == "warn"
    assert worst_level(["warn", "fail"]) == "fail"
    with pytest.raises(ValueError, match="unknown levels"):
        worst_level(["ok"])


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.92, 1.1, "pass"), (0.5, 0.7, "fail"), (0.8, 1.1, "warn"), (0.6, 1.1, "warn"), (0.76, 0.85, "warn"),
     (math.nan, 1.0, "fail")],
)
def test_a_metric_with_an_interval_decides_only_when_the_interval_clears_a_cut_off(
    low: float, high: float, expected: str
) -> None:
    higher = Threshold(0.9, 0.75, higher_is_better=True)
    assert higher.level_of_interval(low, high) == expected
    lower = Threshold(0.1, 0.25, higher_is_better=False)  # the same cases mirrored for lower-is-better
    assert lower.level_of_interval(1 - high, 1 - low) == expected
