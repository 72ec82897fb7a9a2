"""Privacy metrics: copies of training rows are caught, fresh draws from the same distribution pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from models.evidence.privacy import nearest_distances, privacy_metrics
from models.evidence.thresholds import DEFAULT_THRESHOLDS

CATEGORICAL = ["SEX", "ARM"]
NUMERIC = ["AGE", "WEIGHT", "HEIGHT"]


def draw(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "AGE": rng.normal(50, 10, n),
            "WEIGHT": rng.normal(70, 8, n),
            "HEIGHT": rng.normal(170, 9, n),
            "SEX": rng.choice(["F", "M"], n),
            "ARM": rng.choice(["A", "B", "P"], n),
        }
    )


def levels(result) -> dict[str, str]:
    return {v.metric: DEFAULT_THRESHOLDS[v.metric].level(v.value) for v in result.metric_values()}


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return draw(600, 0)


@pytest.fixture(scope="module")
def holdout() -> pd.DataFrame:
    return draw(300, 1)


def test_nearest_distances_match_brute_force_in_chunks() -> None:
    rng = np.random.default_rng(0)
    reference, queries = rng.normal(size=(50, 4)), rng.normal(size=(23, 4))
    expected = np.sort(cdist(queries, reference), axis=1)[:, :3]
    np.testing.assert_allclose(nearest_distances(reference, queries, k=3, chunk_size=5), expected)


def test_copies_of_training_rows_are_exact_copies_and_fail_every_privacy_metric(train, holdout) -> None:
    result = privacy_metrics(train, train.sample(frac=1, random_state=0), holdout, CATEGORICAL, NUMERIC)
    assert result.exact_copy_share == 1.0
    assert result.holdout_exact_copy_share == 0.0
    assert result.dcr_share_below_holdout_p5 == 1.0
    assert result.dcr_median_ratio == 0.0 and result.nndr_median_ratio == 0.0
    assert result.mia_auc > 0.95
    assert set(levels(result).values()) == {"fail"}


def test_a_few_copies_raise_the_exact_copy_share_by_their_fraction(train, holdout) -> None:
    synthetic = pd.concat([draw(570, 2), train.iloc[:30]], ignore_index=True)  # 5 % copies
    assert privacy_metrics(train, synthetic, holdout, CATEGORICAL, NUMERIC).exact_copy_share == pytest.approx(
        0.05
    )


def test_independent_draws_from_the_same_distribution_pass(train, holdout) -> None:
    result = privacy_metrics(train, draw(600, 3), holdout, CATEGORICAL, NUMERIC)
    assert result.exact_copy_share == 0.0
    assert abs(result.dcr_share_below_holdout_p5 - 0.05) < 0.04
    assert result.dcr_median_ratio == pytest.approx(1.0, abs=0.15)
    assert result.mia_auc == pytest.approx(0.5, abs=0.07)
    assert set(levels(result).values()) == {"pass"}


def test_synthetic_rows_near_training_rows_are_flagged_without_being_copies(train, holdout) -> None:
    rng = np.random.default_rng(4)
    jittered = train.assign(AGE=train["AGE"] + rng.normal(0, 0.05, len(train)))  # 0.005 sd away
    result = privacy_metrics(train, jittered, holdout, CATEGORICAL, NUMERIC)
    assert result.exact_copy_share == 0.0
    assert levels(result)["dcr_share_below_holdout_p5"] == "fail"
    assert levels(result)["mia_auc"] == "fail"


def test_missing_values_and_subsampling_are_handled(train, holdout) -> None:
    with_gaps = train.assign(WEIGHT=train["WEIGHT"].where(train.index % 7 != 0))
    result = privacy_metrics(with_gaps, draw(600, 5), holdout, CATEGORICAL, NUMERIC, max_rows=200)
    assert len(result.dcr_synthetic) == len(result.dcr_train_to_synthetic) == 200
    assert np.isfinite(result.dcr_synthetic).all()
    summary = result.summary()
    assert summary["rows_synthetic"] == 200 and summary["dcr_holdout_p5"] <= summary["dcr_holdout_median"]
