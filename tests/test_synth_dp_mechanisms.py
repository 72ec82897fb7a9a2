"""DP mechanisms: the accountant's noise scales give the promised (epsilon, delta), the models add
exactly that noise, and clipping / code histograms bound what one replaced subject can change."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from models.synth.dp import (
    DPGaussianCopulaSynthesizer,
    MSTSynthesizer,
    ZCDPAccountant,
    epsilon_from_rho,
    gaussian_sigma,
    rho_from_epsilon_delta,
)
from models.synth.dp.copula import clipped_score_products
from models.synth.dp.mst import PAIR_SCORE_SENSITIVITY, pair_counts

EPSILONS = (0.5, 1.0, 2.0, 5.0, 10.0)
COLUMNS = {"ARM": {"categories": ["A", "B", "C"]}, "SEX": {"categories": ["F", "M"]},
           "AGE": {"kind": "integer", "min_value": 18, "max_value": 90}, "SYSBP": {"min_value": 60, "max_value": 220}}


def gaussian_mechanism_delta(epsilon: float, sigma_over_sensitivity: float) -> float:
    """Exact delta(epsilon) of the Gaussian mechanism (Balle & Wang 2018, Theorem 8), independent of zCDP."""
    a, b = 1 / (2 * sigma_over_sensitivity), epsilon * sigma_over_sensitivity
    return norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b)


def trial_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = rng.choice(["A", "B", "C"], n, p=[0.5, 0.4, 0.1])
    age = np.clip(rng.normal(60, 10, n), 18, 90).round()
    sbp = 120 + 0.8 * (age - 60) + rng.normal(0, 8, n)
    sbp[rng.random(n) < 0.1] = np.nan
    sex = np.where(rng.random(n) < 0.5 + 0.3 * (arm == "A"), "F", "M")
    return pd.DataFrame({"ARM": arm, "SEX": sex, "AGE": age.astype(int), "SYSBP": sbp.round(1)})


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_the_noise_for_the_budget_gives_the_promised_epsilon_delta(epsilon: float) -> None:
    delta = 1e-6
    sigma = gaussian_sigma(1.0, rho_from_epsilon_delta(epsilon, delta))
    exact = gaussian_mechanism_delta(epsilon, sigma)
    assert exact <= delta  # the guarantee holds ...
    assert exact >= delta / 10  # ... without wasting most of the budget
    assert epsilon_from_rho(rho_from_epsilon_delta(epsilon, delta), delta) == pytest.approx(epsilon, rel=1e-6)


def test_the_accountant_refuses_to_overspend_and_reserves_the_threshold_delta() -> None:
    accountant = ZCDPAccountant(1.0, 1e-6, delta_threshold=5e-7)
    assert accountant.rho_budget == pytest.approx(rho_from_epsilon_delta(1.0, 5e-7))
    sigma = accountant.gaussian("half", 2.0, accountant.rho_budget / 2)
    assert sigma == pytest.approx(2.0 / math.sqrt(accountant.rho_budget))
    with pytest.raises(ValueError, match="exceeds the remaining budget"):
        accountant.gaussian("too much", 1.0, accountant.rho_budget)
    with pytest.raises(ValueError, match="epsilon must be a number"):
        ZCDPAccountant(0.0, 1e-6)


@pytest.mark.parametrize("epsilon", [1.0, 5.0])
def test_dp_copula_ledger_matches_the_accountant_and_spends_the_whole_budget(epsilon: float) -> None:
    df = trial_table()
    model = DPGaussianCopulaSynthesizer(epsilon=epsilon, columns=COLUMNS, marginal_share=0.4, clip=1.5,
                                        random_state=0).fit(df)
    rho = rho_from_epsilon_delta(epsilon, 1e-6)
    marginals, correlation = model.privacy_["measurements"]
    n, d = df.shape
    assert marginals["sensitivity"] == pytest.approx(math.sqrt(2 * d))
    assert marginals["scale"] == pytest.approx(math.sqrt(2 * d) / math.sqrt(2 * 0.4 * rho))
    assert correlation["sensitivity"] == pytest.approx(1.5**2 * d / n)
    assert correlation["scale"] == pytest.approx(1.5**2 * d / n / math.sqrt(2 * 0.6 * rho))
    assert model.privacy_["rho"] == pytest.approx(rho)
    assert model.privacy_["epsilon"] == pytest.approx(epsilon, rel=1e-6)
    # one Gaussian mechanism of the whole release has sensitivity/sigma = sqrt(sum of (sens/sigma)^2)
    ratio = math.sqrt(sum((m["sensitivity"] / m["scale"]) ** 2 for m in model.privacy_["measurements"]))
    assert gaussian_mechanism_delta(epsilon, 1 / ratio) <= 1e-6


def test_the_noise_added_to_the_marginals_has_the_ledgers_scale() -> None:
    df = trial_table(200)
    errors, sigma = [], None
    for seed in range(120):
        model = DPGaussianCopulaSynthesizer(epsilon=1.0, columns=COLUMNS, random_state=seed).fit(df)
        codes = model.encoder_.to_codes(df)
        true = [np.bincount(codes[:, j], minlength=size) for j, size in enumerate(model.encoder_.sizes_)]
        errors.append(np.concatenate([noisy - t for noisy, t in zip(model.noisy_marginals_, true, strict=True)]))
        sigma = model.privacy_["measurements"][0]["scale"]
    errors = np.concatenate(errors)
    assert abs(errors.mean()) < 4 * sigma / math.sqrt(len(errors))
    assert errors.std() == pytest.approx(sigma, rel=0.05)


def test_mst_ledger_thirds_and_sensitivities() -> None:
    df = trial_table()
    model = MSTSynthesizer(epsilon=1.0, columns=COLUMNS, random_state=0).fit(df)
    rho, d = rho_from_epsilon_delta(1.0, 1e-6), df.shape[1]
    one, *selection, two = model.privacy_["measurements"]
    assert one["scale"] == pytest.approx(math.sqrt(2 * d) / math.sqrt(2 * rho / 3))
    assert len(selection) == d - 1 == len(model.tree_)
    for step in selection:
        assert step["mechanism"] == "exponential" and step["sensitivity"] == PAIR_SCORE_SENSITIVITY
        assert step["scale"] == pytest.approx(math.sqrt(8 * rho / 3 / (d - 1)))
    assert two["scale"] == pytest.approx(math.sqrt(2 * (d - 1)) / math.sqrt(2 * rho / 3))
    assert model.privacy_["rho"] == pytest.approx(rho)


def test_clipping_bounds_the_correlation_sensitivity() -> None:
    rng = np.random.default_rng(1)
    n, d, clip_norm = 60, 5, 1.5 * math.sqrt(5)
    z = rng.normal(size=(n, d))
    base = clipped_score_products(z, clip_norm)
    worst = 0.0
    for _ in range(200):
        other = z.copy()
        other[rng.integers(n)] = rng.choice([-1, 1], d) * rng.uniform(0, 50, d)  # an extreme subject
        change = np.linalg.norm(clipped_score_products(other, clip_norm) - base)
        worst = max(worst, change)
        assert change <= clip_norm**2 / n * (1 + 1e-12)
    unclipped = z.copy()
    unclipped[0] = 50.0
    assert np.linalg.norm(clipped_score_products(unclipped, 1e9) - clipped_score_products(z, 1e9)) > clip_norm**2 / n
    assert worst > 0.5 * clip_norm**2 / n  # the bound is nearly reached, not loose


def test_one_replaced_subject_moves_histograms_and_pair_scores_within_their_sensitivities() -> None:
    df = trial_table(100)
    model = MSTSynthesizer(epsilon=1.0, columns=COLUMNS, random_state=0).fit(df)
    encoder, sizes = model.encoder_, model.encoder_.sizes_
    rng = np.random.default_rng(2)
    codes = encoder.to_codes(df)
    for _ in range(50):
        other = codes.copy()
        other[rng.integers(len(df))] = [rng.integers(size) for size in sizes]
        hist = [np.bincount(c[:, j], minlength=s) for c in (codes, other) for j, s in enumerate(sizes)]
        d = len(sizes)
        assert np.linalg.norm(np.concatenate(hist[:d]) - np.concatenate(hist[d:])) <= math.sqrt(2 * d)
        for i, j in [(0, 1), (1, 3), (2, 3)]:
            reference = np.full((sizes[i], sizes[j]), len(df) / (sizes[i] * sizes[j]))
            scores = [np.abs(pair_counts(c, i, j, sizes) - reference).sum() for c in (codes, other)]
            assert abs(scores[0] - scores[1]) <= PAIR_SCORE_SENSITIVITY
