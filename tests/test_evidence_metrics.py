"""Fidelity, detection and utility metrics on data whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from models.evidence.encoding import clean_frame, split_columns
from models.evidence.metrics import (
    correlation_delta,
    detection_auc,
    fidelity_metrics,
    ks_statistic,
    tv_complement,
    utility_scores,
    wasserstein_scaled,
)
from models.evidence.thresholds import DEFAULT_THRESHOLDS

CATEGORICAL = ["SEX", "ARM"]
NUMERIC = ["AGE", "WEIGHT"]


def cohort(n: int, seed: int, age_shift: float = 0.0) -> pd.DataFrame:
    """Clean frame: WEIGHT correlates with AGE; RESPONSE (categorical) depends on AGE and ARM."""
    rng = np.random.default_rng(seed)
    age = rng.normal(50, 10, n) + age_shift
    arm = rng.choice(["A", "B", "P"], n)
    logit = (age - 50) / 5 + np.where(arm == "P", -1.0, 1.0)
    return pd.DataFrame(
        {
            "AGE": age,
            "WEIGHT": 70 + 0.5 * (age - 50) + rng.normal(0, 3, n),
            "SEX": rng.choice(["F", "M"], n),
            "ARM": arm,
            "RESPONSE": np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no"),
        }
    )


def test_wasserstein_is_zero_for_identical_columns_and_the_shift_in_iqr_units() -> None:
    real = pd.Series(np.linspace(0.0, 1.0, 1001))  # IQR exactly 0.5
    assert wasserstein_scaled(real, real.copy()) == 0.0
    assert wasserstein_scaled(real, real + 0.25) == pytest.approx(0.25 / 0.5)


def test_wasserstein_scale_falls_back_to_the_range_when_the_iqr_is_zero() -> None:
    real = pd.Series([5.0] * 98 + [0.0, 10.0])  # IQR 0, range 10
    assert wasserstein_scaled(real, real + 1.0) == pytest.approx(1.0 / 10.0)


def test_ks_statistic_of_identical_and_disjoint_columns() -> None:
    real = pd.Series(np.arange(100.0))
    assert ks_statistic(real, real.copy()) == 0.0
    assert ks_statistic(real, real + 1000.0) == 1.0


def test_missing_values_are_ignored_by_the_numeric_distances() -> None:
    real = pd.Series(np.arange(100.0))
    with_gaps = pd.concat([real, pd.Series([np.nan] * 50)], ignore_index=True)
    assert wasserstein_scaled(real, with_gaps) == 0.0
    assert np.isnan(ks_statistic(real, pd.Series([np.nan, np.nan])))


def test_tv_complement_of_known_frequencies() -> None:
    real = pd.Series(["a"] * 50 + ["b"] * 50)
    assert tv_complement(real, real.sample(frac=1, random_state=0)) == 1.0
    assert tv_complement(real, pd.Series(["a"] * 80 + ["b"] * 20)) == pytest.approx(1 - 0.3)
    assert tv_complement(real, pd.Series(["c"] * 10)) == 0.0


def test_contingency_similarity_sees_a_broken_association_the_marginals_miss() -> None:
    real = pd.DataFrame({"A": ["x", "y"] * 50, "B": ["x", "y"] * 50})  # A == B always
    swapped = pd.DataFrame({"A": ["x", "y"] * 50, "B": ["y", "x"] * 50})  # A != B always
    rows = {(r.metric, r.variable): r.value for r in fidelity_metrics(real, swapped, ["A", "B"], [])}
    assert rows[("tv_complement", "A")] == rows[("tv_complement", "B")] == 1.0
    assert rows[("contingency_similarity", "A|B")] == 0.0


def test_correlation_delta_of_reversed_correlation() -> None:
    x = np.linspace(-1, 1, 200)
    real = pd.DataFrame({"u": x, "v": x})
    flipped = pd.DataFrame({"u": x, "v": -x})
    assert correlation_delta(real, real, ["u", "v"]) == (0.0, 0.0)
    assert correlation_delta(real, flipped, ["u", "v"]) == pytest.approx((2.0, 2.0))


def test_fidelity_metrics_emit_every_column_and_pair() -> None:
    real = cohort(300, 0)
    rows = fidelity_metrics(real, cohort(300, 1), CATEGORICAL + ["RESPONSE"], NUMERIC)
    variables = {(r.metric, r.variable) for r in rows}
    for col in NUMERIC:
        assert {("wasserstein", col), ("ks_statistic", col), ("ks_complement", col)} <= variables
    assert {("contingency_similarity", "SEX|ARM"), ("contingency_similarity", "ARM|RESPONSE")} <= variables
    assert {("correlation_delta_mean", None), ("correlation_delta_max", None)} <= variables


@pytest.fixture(autouse=True)
def one_thread():
    """OpenMP threads of the classifiers contend badly on a shared 2-core machine."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {"real": cohort(800, 0), "same": cohort(800, 1), "shifted": cohort(800, 2, age_shift=20.0)}


def test_detection_auc_is_chance_for_identical_and_independent_data_and_high_for_shifted(frames) -> None:
    categorical = CATEGORICAL + ["RESPONSE"]
    identical = detection_auc(frames["real"], frames["real"].copy(), categorical)
    independent = detection_auc(frames["real"], frames["same"], categorical)
    shifted = detection_auc(frames["real"], frames["shifted"], categorical)  # AGE + 2 sd
    assert identical["auc"] == pytest.approx(0.5, abs=0.02)
    assert independent["auc"] < 0.6
    assert shifted["auc"] > DEFAULT_THRESHOLDS["detection_auc"].fail


def test_utility_ratio_is_one_for_real_data_and_low_when_the_target_is_scrambled(frames) -> None:
    categorical = CATEGORICAL + ["RESPONSE"]
    holdout = cohort(400, 3)
    scrambled = frames["real"].assign(
        RESPONSE=np.random.default_rng(0).permutation(frames["real"]["RESPONSE"])
    )
    same = utility_scores(frames["real"], frames["real"], holdout, "RESPONSE", categorical, n_bootstrap=0)
    broken = utility_scores(frames["real"], scrambled, holdout, "RESPONSE", categorical, n_bootstrap=0)
    regression = utility_scores(frames["real"], frames["same"], holdout, "WEIGHT", categorical, n_bootstrap=0)
    assert same["ratio"] == pytest.approx(1.0)
    assert same["auc_real"] > 0.75  # the target is predictable from AGE and ARM
    assert broken["auc_synthetic"] < 0.6 and broken["ratio"] < 0.8
    assert regression["task"] == "regression" and regression["r2_real"] > 0.5
    assert regression["ratio"] > 0.85  # independent draws are as useful as the real data


def test_utility_with_a_single_class_in_the_synthetic_target_scores_chance(frames) -> None:
    holdout = cohort(200, 4)
    one_class = frames["real"].assign(RESPONSE="yes")
    scores = utility_scores(frames["real"], one_class, holdout, "RESPONSE", CATEGORICAL + ["RESPONSE"], n_bootstrap=0)
    assert scores["auc_synthetic"] == 0.5


def test_split_columns_rejects_mismatched_or_untyped_input() -> None:
    real = cohort(20, 0)
    with pytest.raises(ValueError, match="same columns"):
        split_columns({"real": real, "synthetic": real.drop(columns="AGE")}, CATEGORICAL)
    with pytest.raises(ValueError, match="'SEX'.*not numeric"):
        split_columns({"real": real}, ["ARM", "RESPONSE"])
    with pytest.raises(ValueError, match="do not exist"):
        split_columns({"real": real}, ["NOPE"])
    with pytest.raises(ValueError, match="no rows"):
        split_columns({"real": real, "synthetic": real.iloc[:0]}, CATEGORICAL)
    with pytest.raises(ValueError, match="entirely missing"):
        split_columns({"real": real.assign(AGE=np.nan)}, CATEGORICAL + ["RESPONSE"])


def test_clean_frame_makes_dtypes_comparable() -> None:
    raw = pd.DataFrame(
        {
            "DAY": pd.to_datetime(["1970-01-02", None]),
            "FLAG": [True, False],
            "SITE": pd.array([101, None], dtype="Int64"),
        }
    )
    clean = clean_frame(raw, ["SITE"], ["DAY", "FLAG"])
    assert clean["DAY"].iloc[0] == 1.0 and np.isnan(clean["DAY"].iloc[1])
    assert clean["FLAG"].tolist() == [1.0, 0.0]
    assert clean["SITE"].tolist() == ["101", "<missing>"]
