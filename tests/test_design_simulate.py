"""Monte Carlo power: row-wise statistics against scipy, simulated vs analytic/exact power, seeds."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from models.design import (
    BinaryDesign,
    ContinuousDesign,
    ResampledCohort,
    TimeToEventDesign,
    rowstats,
    simulate_from_inputs,
    simulate_power,
)
from models.design.simulate import _mar_intercept

RNG = np.random.default_rng(2024)


def _masks(shape, p_drop=0.2):
    observed = RNG.random(shape) >= p_drop
    observed[:, :3] = True  # keep every row testable
    return observed


def test_ttest_rows_match_scipy_with_dropout():
    c, t = RNG.normal(size=(6, 30)), RNG.normal(0.4, size=(6, 25))
    oc, ot = _masks(c.shape), _masks(t.shape)
    stat, df = rowstats.ttest(c, t, oc, ot)
    for i in range(6):
        ref = stats.ttest_ind(t[i][ot[i]], c[i][oc[i]])
        assert stat[i] == pytest.approx(ref.statistic, rel=1e-10)
        assert df[i] == ref.df


def test_ancova_rows_match_least_squares():
    z_c, z_t = RNG.normal(size=(5, 40)), RNG.normal(size=(5, 35))
    c, t = 10 + 0.7 * z_c + RNG.normal(size=z_c.shape), 10.5 + 0.7 * z_t + RNG.normal(size=z_t.shape)
    oc, ot = _masks(c.shape), _masks(t.shape)
    stat, df = rowstats.ancova(c, t, z_c, z_t, oc, ot)
    for i in range(5):
        y = np.r_[c[i][oc[i]], t[i][ot[i]]]
        x = np.column_stack(
            [
                np.ones(y.size),
                np.r_[np.zeros(oc[i].sum()), np.ones(ot[i].sum())],
                np.r_[z_c[i][oc[i]], z_t[i][ot[i]]],
            ]
        )
        beta, rss, *_ = np.linalg.lstsq(x, y, rcond=None)
        se = math.sqrt(rss[0] / (y.size - 3) * np.linalg.inv(x.T @ x)[1, 1])
        assert stat[i] == pytest.approx(beta[1] / se, rel=1e-9)
        assert df[i] == y.size - 3


@pytest.mark.parametrize("correction", [False, True])
def test_two_proportions_z_squared_is_scipy_chi_square(correction):
    c, t = RNG.random((8, 30)) < 0.4, RNG.random((8, 28)) < 0.6
    oc, ot = _masks(c.shape), _masks(t.shape)
    z = rowstats.two_proportions_z(c, t, oc, ot, continuity_correction=correction)
    for i in range(8):
        xc, xt = c[i][oc[i]], t[i][ot[i]]
        table = [[xt.sum(), (~xt).sum()], [xc.sum(), (~xc).sum()]]
        chi2 = stats.chi2_contingency(table, correction=correction).statistic
        assert z[i] ** 2 == pytest.approx(chi2, rel=1e-9, abs=1e-12)
        assert np.sign(z[i]) == np.sign(xt.mean() - xc.mean()) or z[i] == 0


def test_logrank_rows_match_scipy_logrank():
    event = RNG.exponential(size=(6, 50)) * np.r_[np.ones(25), 1.8 * np.ones(25)]
    censor = RNG.uniform(0.5, 3, size=event.shape)
    time, observed = np.minimum(event, censor), event <= censor
    z = rowstats.logrank_z(time[:, :25], observed[:, :25], time[:, 25:], observed[:, 25:])
    for i in range(6):
        treated = stats.CensoredData.right_censored(time[i, 25:], ~observed[i, 25:])
        control = stats.CensoredData.right_censored(time[i, :25], ~observed[i, :25])
        assert z[i] == pytest.approx(stats.logrank(treated, control).statistic, rel=1e-10)


def test_row_tests_hold_their_level_under_the_null():
    n_rows = 20_000
    y = RNG.normal(size=(n_rows, 40))
    t, df = rowstats.ttest(y[:, :20], y[:, 20:])
    event_time, censor = RNG.exponential(size=(n_rows, 40)), RNG.uniform(0, 2, size=(n_rows, 40))
    time, event = np.minimum(event_time, censor), event_time <= censor
    z = rowstats.logrank_z(time[:, :20], event[:, :20], time[:, 20:], event[:, 20:])
    se = math.sqrt(0.05 * 0.95 / n_rows)
    assert abs(np.mean(np.abs(t) > stats.t.isf(0.025, df)) - 0.05) < 3 * se
    assert abs(np.mean(np.abs(z) > stats.norm.isf(0.025)) - 0.05) < 4 * se  # log-rank is asymptotic


def _within_3_se(sim, analytic):
    assert abs(sim.power - analytic) < 3 * sim.mc_se, (sim.power, analytic, sim.mc_se)


def test_simulated_ttest_power_agrees_with_noncentral_t():
    design = ContinuousDesign(effect=0.5)
    _within_3_se(simulate_power(design, 64, n_trials=4000, seed=11), float(design.power(64)))


def test_simulated_ancova_power_agrees_with_analytic():
    design = ContinuousDesign(effect=2.0, sd=6.0, analysis="ancova", baseline_correlation=0.6)
    size = design.sample_size(0.8)
    _within_3_se(simulate_power(design, size.n_control, n_trials=4000, seed=12), size.power)


def test_simulated_power_with_mcar_dropout_agrees_with_analytic_after_dropout():
    design = ContinuousDesign(effect=0.5, dropout=0.15, ratio=2.0)
    size = design.sample_size(0.8)
    sim = simulate_power(design, size.enrol_control, size.enrol_treatment, n_trials=4000, seed=13)
    _within_3_se(sim, float(design.power_at(size.enrol_control * 0.85, size.enrol_treatment * 0.85)))


@pytest.mark.parametrize("method", ["pooled", "arcsine"])
def test_simulated_chi_square_power_agrees_with_analytic(method):
    design = BinaryDesign(p_control=0.50, p_treatment=0.65, method=method)
    _within_3_se(simulate_power(design, 170, n_trials=2000, seed=14), float(design.power(170)))


def test_simulated_chi_square_power_agrees_with_exact_binomial_power():
    n, p_c, p_t = 60, 0.3, 0.55
    x_c, x_t = np.arange(n + 1)[:, None], np.arange(n + 1)[None, :]
    weight = stats.binom.pmf(x_c, n, p_c) * stats.binom.pmf(x_t, n, p_t)
    pooled = (x_c + x_t) / (2 * n)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x_t - x_c) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
    exact = weight[np.abs(np.nan_to_num(z)) > stats.norm.isf(0.025)].sum()
    sim = simulate_power(BinaryDesign(p_control=p_c, p_treatment=p_t), n, n_trials=20_000, seed=15)
    _within_3_se(sim, exact)


@pytest.mark.parametrize("hr", [0.7, 1.5])
def test_simulated_logrank_power_agrees_with_schoenfeld(hr):
    design = TimeToEventDesign(hr=hr, control_median=12, accrual=12, follow_up=12)
    size = design.sample_size(0.8)
    _within_3_se(simulate_power(design, size.n_control, n_trials=2000, seed=16), size.power)


def test_exponential_dropout_lowers_logrank_power():
    kwargs = {"hr": 0.7, "control_median": 12, "accrual": 12, "follow_up": 12}
    full = simulate_power(TimeToEventDesign(**kwargs), 150, n_trials=2000, seed=3)
    lossy = simulate_power(TimeToEventDesign(**kwargs, dropout=0.4), 150, n_trials=2000, seed=3)
    assert lossy.power < full.power - 3 * full.mc_se


@pytest.mark.parametrize(
    "design",
    [
        ContinuousDesign(effect=-0.5, alpha=0.025, sided=1),
        TimeToEventDesign(hr=1.5, control_median=12, accrual=12, follow_up=12, alpha=0.025, sided=1),
    ],
    ids=["negative-mean-difference", "hr-above-1"],
)
def test_one_sided_tests_look_in_the_direction_of_the_effect(design):
    size = design.sample_size(0.8)
    _within_3_se(simulate_power(design, size.n_control, n_trials=2000, seed=4), size.power)


def test_same_seed_same_result_and_rerun_from_inputs():
    design = BinaryDesign(p_control=0.3, p_treatment=0.45, dropout=0.2)
    a = simulate_power(design, 100, n_trials=3000, seed=99, dropout_mechanism="mar")
    b = simulate_power(design, 100, n_trials=3000, seed=99, dropout_mechanism="mar")
    c = simulate_power(design, 100, n_trials=3000, seed=100, dropout_mechanism="mar")
    assert a == b
    assert a.rejections != c.rejections
    stored = json.loads(json.dumps(a.inputs))  # the record survives a JSON round trip
    assert simulate_from_inputs(stored) == a
    assert stored["seed"] == 99 and stored["design"]["p_treatment"] == 0.45


def test_resampled_cohort_feeds_outcome_and_rerun_needs_the_same_table():
    table = pd.DataFrame({"BASE": RNG.lognormal(3, 0.8, size=500), "SEX": "F"})
    cohort = ResampledCohort.from_table(table, "BASE")
    draws = cohort.sample((4, 50), np.random.default_rng(0))
    assert np.isin(draws, cohort.values).all()
    assert cohort.values.mean() == pytest.approx(0, abs=1e-12) and cohort.values.std() == pytest.approx(1)
    design = ContinuousDesign(effect=0.5, analysis="ancova", baseline_correlation=0.7, dropout=0.1)
    result = simulate_power(design, 40, n_trials=500, seed=5, cohort=cohort, dropout_mechanism="mar")
    assert simulate_from_inputs(result.inputs, cohort=cohort) == result
    with pytest.raises(ValueError, match="cohort"):
        simulate_from_inputs(result.inputs)


@pytest.mark.parametrize(
    ("column", "message"), [("AGE", "not in the baseline table"), ("SEX", "distinct numeric")]
)
def test_resampled_cohort_rejects_bad_columns(column, message):
    with pytest.raises(ValueError, match=message):
        ResampledCohort.from_table(pd.DataFrame({"SEX": ["F", "M"], "BASE": [1.0, 2.0]}), column)


@pytest.mark.parametrize("strength", [0.5, 2.0])
def test_mar_dropout_is_calibrated_to_the_requested_rate(strength):
    from models.design import NormalCohort

    a = _mar_intercept(NormalCohort(), 0.2, strength)
    z = np.random.default_rng(1).standard_normal(400_000)
    assert special.expit(a + strength * z).mean() == pytest.approx(0.2, abs=2e-3)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n_control": 1}, "n_control"),
        ({"n_control": 20, "n_treatment": 1}, "n_treatment"),
        ({"n_control": 20, "n_trials": 0}, "n_trials"),
        ({"n_control": 20, "dropout_mechanism": "exponential"}, "dropout_mechanism"),
    ],
)
def test_simulation_bad_input_names_the_parameter(kwargs, param):
    with pytest.raises(ValueError, match=param):
        simulate_power(ContinuousDesign(effect=0.5), **kwargs)
