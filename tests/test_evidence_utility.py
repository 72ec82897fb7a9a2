"""Utility evidence: targets that carry signal, a bootstrap interval, and a verdict only when it is clear."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from models.evidence.metrics import MIN_TARGET_SIGNAL, choose_utility_targets, utility_scores
from models.evidence.pack import build_evidence_pack
from models.evidence.thresholds import DEFAULT_THRESHOLDS

CATEGORICAL = ["SEX", "ARM", "RESPONSE"]


@pytest.fixture(autouse=True)
def one_thread():
    """OpenMP threads of the classifiers contend badly on a shared 2-core machine."""
    with threadpool_limits(1):
        yield


def trial(n: int, seed: int) -> pd.DataFrame:
    """ARM randomized (independent of everything at baseline); RESPONSE depends on AGE; NOISE on nothing."""
    rng = np.random.default_rng(seed)
    age = rng.normal(50, 10, n)
    return pd.DataFrame({
        "AGE": age,
        "NOISE": rng.normal(0, 1, n),
        "SEX": rng.choice(["F", "M"], n),
        "ARM": rng.choice(["A", "P"], n),
        "RESPONSE": np.where(rng.random(n) < 1 / (1 + np.exp(-(age - 50) / 4)), "yes", "no"),
    })


def test_the_automatic_target_carries_signal_and_is_never_the_randomized_arm() -> None:
    real = trial(400, 0)
    real["ARM"] = np.where(real["RESPONSE"] == "yes", "A", "P")  # even a predictable ARM is left out
    choice = choose_utility_targets(real, CATEGORICAL)
    assert choice.targets in (["RESPONSE"], ["AGE"])  # each predicts the other; NOISE and SEX carry nothing
    assert "ARM" not in set(choice.screen["column"])
    assert "left out as randomized" in choice.reason and "ARM" in choice.reason
    signal = choice.screen.set_index("column")["signal"]
    assert signal[choice.targets[0]] == signal.max() >= MIN_TARGET_SIGNAL
    assert signal["NOISE"] < MIN_TARGET_SIGNAL and signal["SEX"] < MIN_TARGET_SIGNAL


def test_no_automatic_target_when_no_column_carries_signal() -> None:
    rng = np.random.default_rng(1)
    real = pd.DataFrame({"A": rng.normal(size=300), "B": rng.normal(size=300), "ARM": rng.choice(["X", "Y"], 300)})
    choice = choose_utility_targets(real, ["ARM"])
    assert choice.targets == [] and choice.reason.startswith("no column carries signal")


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {"real": trial(300, 2), "holdout": trial(150, 3), "same": trial(300, 4)}


def test_the_interval_covers_the_noise_of_the_synthetic_sample(frames) -> None:
    """Synthetic samples of the real distribution (different seeds) give ratios that scatter; the
    bootstrap interval of one sample is about as wide as that scatter."""
    ratios = [utility_scores(frames["real"], trial(300, 10 + s), frames["holdout"], "RESPONSE", CATEGORICAL,
                             n_bootstrap=0)["ratio"] for s in range(6)]
    one = utility_scores(frames["real"], frames["same"], frames["holdout"], "RESPONSE", CATEGORICAL,
                         n_bootstrap=20)
    assert one["ratio_low"] < one["ratio"] < one["ratio_high"]
    assert one["ratio_high"] - one["ratio_low"] > 2 * np.std(ratios, ddof=1)  # a 95 % interval spans ~4 SD
    assert one["ratio_low"] <= np.mean(ratios) <= one["ratio_high"]


@pytest.mark.parametrize(
    ("target", "synthetic", "expected"),
    [("RESPONSE", "same", "pass"), ("RESPONSE", "reversed", "fail"), ("ARM", "same", "warn")],
    ids=["signal-faithful", "signal-broken", "randomized-arm-not-decisive"],
)
def test_utility_decides_the_verdict_only_when_its_interval_clears_the_cut_off(
    frames, target: str, synthetic: str, expected: str
) -> None:
    synth = frames["same"]
    if synthetic == "reversed":  # the synthesizer got the AGE-RESPONSE relation backwards
        synth = synth.assign(RESPONSE=synth["RESPONSE"].map({"yes": "no", "no": "yes"}))
    pack = build_evidence_pack(frames["real"], synth, frames["holdout"], CATEGORICAL, target=target,
                               run_id="r", n_bootstrap=20, closest_k=0)
    row = pack.metrics_frame().set_index("metric").loc["utility_ratio"]
    assert row["ci_low"] < row["value"] < row["ci_high"]
    assert row["level"] == expected
    if expected == "warn":  # the arm's ratio of two chance AUCs is noise: wide, not decisive, said so
        threshold = DEFAULT_THRESHOLDS["utility_ratio"]
        assert row["ci_high"] - row["ci_low"] > 0.2
        assert row["ci_low"] < threshold.warn < row["ci_high"]
        assert any("straddles a cut-off" in line for line in pack.explanation())


def test_auto_target_is_recorded_with_its_reason(frames) -> None:
    pack = build_evidence_pack(frames["real"], frames["same"], frames["holdout"], CATEGORICAL, target="auto",
                               run_id="r", n_bootstrap=5, closest_k=0)
    chosen = pack.details["utility_targets"]
    assert chosen["targets"] and chosen["targets"][0] != "ARM"
    assert "chosen from the data" in chosen["reason"] and "ARM" in chosen["reason"]
    assert pack.metrics_frame().query("metric == 'utility_ratio'")["variable"].tolist() == chosen["targets"]
    assert "utility target(s): chosen from the data" in pack.summary_text()
