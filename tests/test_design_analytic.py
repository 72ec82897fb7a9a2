"""Analytic sample size and power: published values, independent references, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from models.design import (
    BinaryDesign,
    ContinuousDesign,
    TimeToEventDesign,
    inflate_for_dropout,
    schoenfeld_events,
)


@pytest.mark.parametrize(("power", "n"), [(0.8, 64), (0.9, 86)])
def test_ttest_published_n_per_group(power, n):
    size = ContinuousDesign(effect=0.5, alpha=0.05, sided=2).sample_size(power)
    assert (size.n_control, size.n_treatment, size.total_n) == (n, n, 2 * n)


def test_ttest_effect_in_outcome_units_equals_cohens_d():
    assert ContinuousDesign(effect=-4.0, sd=8.0).sample_size(0.8).n_control == 64


def test_arcsine_published_170_per_group():
    assert BinaryDesign(p_control=0.50, p_treatment=0.65, method="arcsine").sample_size(0.8).n_control == 170


def test_pooled_matches_fleiss_formula_with_and_without_continuity_correction():
    p1, p2, z_a, z_b = 0.50, 0.65, stats.norm.isf(0.025), stats.norm.ppf(0.8)
    p_bar = (p1 + p2) / 2
    n = (z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (
        p2 - p1
    ) ** 2
    n_cc = n / 4 * (1 + math.sqrt(1 + 4 / (n * abs(p2 - p1)))) ** 2  # Fleiss, Tytun & Ury (1980)
    assert BinaryDesign(p_control=p1, p_treatment=p2).sample_size(0.8).n_control == math.ceil(n) == 170
    cc = BinaryDesign(p_control=p1, p_treatment=p2, continuity_correction=True).sample_size(0.8).n_control
    assert abs(cc - math.ceil(n_cc)) <= 1


@pytest.mark.parametrize(("power", "ratio", "events"), [(0.8, 1, 247), (0.9, 1, 331), (0.8, 2, 278)])
def test_logrank_published_events(power, ratio, events):
    assert schoenfeld_events(0.70, alpha=0.05, power=power, ratio=ratio, sided=2) == events
    design = TimeToEventDesign(hr=0.70, ratio=ratio, control_median=12, accrual=12, follow_up=12)
    assert design.sample_size(power).events == events


def test_dropout_64_becomes_76():
    assert inflate_for_dropout(64, 0.15) == 76
    size = ContinuousDesign(effect=0.5, dropout=0.15).sample_size(0.8)
    assert (size.n_control, size.enrol_control, size.enrol_treatment, size.total_enrol) == (64, 76, 76, 152)


def test_no_dropout_enrols_exactly_n():
    assert inflate_for_dropout(64, 0.0) == 64


@pytest.mark.parametrize("ratio", [1.0, 2.0, 0.5])
def test_ttest_power_matches_pingouin(ratio):
    pingouin = pytest.importorskip("pingouin")
    design = ContinuousDesign(effect=0.4, ratio=ratio)
    for n_c in (20, 57, 130):
        n_t = ratio * n_c
        ref = pingouin.power_ttest2n(nx=n_c, ny=n_t, d=0.4, alpha=0.05, alternative="two-sided")
        assert float(design.power(n_c)) == pytest.approx(ref, abs=1e-6)


def test_arcsine_power_matches_statsmodels_with_ratio():
    power_mod = pytest.importorskip("statsmodels.stats.power")
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    h = proportion.proportion_effectsize(0.65, 0.50)
    design = BinaryDesign(p_control=0.50, p_treatment=0.65, method="arcsine", ratio=2.0)
    ref = power_mod.NormalIndPower().power(effect_size=h, nobs1=100, alpha=0.05, ratio=2.0)
    # statsmodels: nobs1 is the first group, ratio = nobs2 / nobs1; here 200 treated, 100 control
    assert float(design.power(100)) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize(
    "design",
    [
        ContinuousDesign(effect=0.3, ratio=1.5),
        ContinuousDesign(effect=2.0, sd=5.0, analysis="ancova", baseline_correlation=0.5, sided=1),
        BinaryDesign(p_control=0.2, p_treatment=0.3, continuity_correction=True),
        BinaryDesign(p_control=0.6, p_treatment=0.4, method="arcsine", ratio=3),
        TimeToEventDesign(hr=1.4, control_median=24, accrual=18, follow_up=6, ratio=2),
    ],
    ids=["t", "ancova", "pooled-cc", "arcsine", "tte"],
)
def test_sample_size_is_the_smallest_reaching_target(design):
    size = design.sample_size(0.85)
    assert size.power >= 0.85
    assert size.n_treatment == math.ceil(design.ratio * size.n_control - 1e-9)
    smaller = size.n_control - 1
    if isinstance(design, TimeToEventDesign):
        assert float(design.expected_events(smaller, design.n_treatment_for(smaller))) < size.events
    else:
        assert float(design.power_at(smaller, design.n_treatment_for(smaller))) < 0.85


def test_power_curves_increase_with_n_and_effect():
    design = BinaryDesign(p_control=0.3, p_treatment=0.45)
    assert np.all(np.diff(design.power(np.arange(10, 400, 10))) > 0)
    powers = [float(design.with_effect(e).power(150)) for e in (0.05, 0.1, 0.15, 0.2)]
    assert powers == sorted(powers)
    hrs = [
        float(TimeToEventDesign(hr=h, control_median=12, accrual=12, follow_up=12).power(150))
        for h in (0.9, 0.8, 0.7)
    ]
    assert hrs == sorted(hrs)


def test_power_at_tiny_effect_approaches_alpha():
    assert float(ContinuousDesign(effect=1e-6).power(100)) == pytest.approx(0.05, abs=1e-4)


def test_one_sided_half_alpha_equals_two_sided():
    two = ContinuousDesign(effect=0.5, alpha=0.05, sided=2).sample_size(0.8).n_control
    one = ContinuousDesign(effect=-0.5, alpha=0.025, sided=1).sample_size(0.8).n_control
    assert one == two


def test_ancova_needs_fewer_subjects_by_one_minus_rho_squared():
    t = ContinuousDesign(effect=0.3).sample_size(0.8).n_control
    ancova = (
        ContinuousDesign(effect=0.3, analysis="ancova", baseline_correlation=0.6).sample_size(0.8).n_control
    )
    assert abs(ancova - t * (1 - 0.36)) <= 2


def test_event_probability_matches_numerical_integration():
    design = TimeToEventDesign(hr=0.7, control_median=10, accrual=15, follow_up=9)
    lam = design.hazard_control
    # entry u ~ U(0, A): followed for A + F - u
    ref = integrate.quad(lambda u: 1 - math.exp(-lam * (15 + 9 - u)), 0, 15)[0] / 15
    assert design.event_probability(lam) == pytest.approx(ref, rel=1e-10)
    no_accrual = TimeToEventDesign(hr=0.7, control_median=10, accrual=0, follow_up=9)
    assert no_accrual.event_probability(lam) == pytest.approx(1 - math.exp(-lam * 9))


def test_tte_subjects_deliver_the_required_events():
    design = TimeToEventDesign(hr=0.7, control_median=12, accrual=12, follow_up=12)
    size = design.sample_size(0.8)
    expected = size.n_control * design.event_probability(design.hazard_control) + size.n_treatment * (
        design.event_probability(design.hazard_treatment)
    )
    assert size.events <= expected < size.events + 2


@pytest.mark.parametrize(
    ("factory", "param"),
    [
        (lambda: ContinuousDesign(effect=0.5, alpha=0.0), "alpha"),
        (lambda: ContinuousDesign(effect=0.5, alpha=1.0), "alpha"),
        (lambda: BinaryDesign(p_control=0.3, p_treatment=0.4, alpha=-0.1), "alpha"),
        (lambda: ContinuousDesign(effect=0.5).sample_size(1.0), "power"),
        (lambda: ContinuousDesign(effect=0.5).sample_size(0.0), "power"),
        (lambda: ContinuousDesign(effect=0.5, dropout=1.0), "dropout"),
        (lambda: ContinuousDesign(effect=0.5, dropout=1.5), "dropout"),
        (lambda: ContinuousDesign(effect=0.5, dropout=-0.1), "dropout"),
        (lambda: inflate_for_dropout(64, 1.0), "dropout"),
        (lambda: ContinuousDesign(effect=0.5, sd=0.0), "sd"),
        (lambda: ContinuousDesign(effect=0.5, sd=-2.0), "sd"),
        (lambda: ContinuousDesign(effect=0.0), "effect"),
        (lambda: TimeToEventDesign(hr=1.0, control_median=12, accrual=12, follow_up=12), "hr"),
        (lambda: TimeToEventDesign(hr=0.0, control_median=12, accrual=12, follow_up=12), "hr"),
        (lambda: TimeToEventDesign(hr=-0.7, control_median=12, accrual=12, follow_up=12), "hr"),
        (lambda: schoenfeld_events(1.0), "hr"),
        (lambda: TimeToEventDesign(hr=0.7, control_median=0, accrual=12, follow_up=12), "control_median"),
        (lambda: BinaryDesign(p_control=0.0, p_treatment=0.4), "p_control"),
        (lambda: BinaryDesign(p_control=0.3, p_treatment=1.0), "p_treatment"),
        (lambda: BinaryDesign(p_control=0.3, p_treatment=0.3), "p_treatment"),
        (lambda: ContinuousDesign(effect=0.5, ratio=0.0), "ratio"),
        (lambda: BinaryDesign(p_control=0.3, p_treatment=0.4, ratio=-1.0), "ratio"),
        (lambda: ContinuousDesign(effect=0.5, sided=3), "sided"),
    ],
)
def test_bad_input_names_the_parameter(factory, param):
    with pytest.raises(ValueError, match=param):
        factory()


@pytest.mark.parametrize("answer", [2, 3, 17, 1_000, 123_457, 9_999_999])
@pytest.mark.parametrize("start", [2, 50, 123_456, 5e6])
def test_smallest_integer_search_is_exact_and_logarithmic_from_any_start(answer, start):
    from models.design.analytic import _smallest_integer

    calls = []

    def ok(n: int) -> bool:
        calls.append(n)
        return n >= answer

    assert _smallest_integer(ok, start) == answer
    assert len(calls) <= 2 * math.log2(abs(answer - start) + 2) + 4  # a linear walk took millions here


def test_a_sample_size_beyond_ten_million_per_arm_or_a_nan_power_is_an_error_not_a_hang():
    from models.design.analytic import MAX_N_PER_ARM, _smallest_integer

    with pytest.raises(ValueError, match="not reached with 10,000,000"):
        _smallest_integer(lambda n: False, 10)
    assert _smallest_integer(lambda n: n >= MAX_N_PER_ARM, 10) == MAX_N_PER_ARM
    design = ContinuousDesign(effect=0.5)
    object.__setattr__(design, "_integer_power", lambda n: float("nan"))
    with pytest.raises(ValueError, match="power: not computable"):
        design.sample_size(0.8)
    with pytest.raises(ValueError, match="effect: .* at most 100"):
        ContinuousDesign(effect=1e308)
