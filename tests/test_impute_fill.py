"""Closest imputation: KNN fills with every donor recorded, and a study can ask for it whatever wins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.impute import FastKNNImputer
from models.impute.fill import fill_plan, fill_with_donors
from trialsynth.study_config import StudyConfig

LEVELS = ["USUBJID", "SITEID", "VISITNUM", "VISIT"]


def visits(n_subjects: int = 40, seed: int = 0) -> pd.DataFrame:
    """Subject x visit matrix like the study's: correlated vitals, 20% gaps, integer-valued SBP (ties)."""
    rng = np.random.default_rng(seed)
    rows = [(f"S{s:03d}", "01", float(v), f"WEEK {v}") for s in range(n_subjects) for v in (1, 2, 4)]
    base = rng.normal(0, 1, (len(rows), 1))
    values = np.hstack([np.round(130 + 12 * base + rng.normal(0, 4, (len(rows), 1))),
                        80 + 6 * base + rng.normal(0, 3, (len(rows), 1)), rng.normal(70, 9, (len(rows), 1))])
    frame = pd.DataFrame(values, index=pd.MultiIndex.from_tuples(rows, names=LEVELS), columns=["SYSBP", "DIABP", "HR"])
    return frame.mask(rng.random(frame.shape) < 0.2)


def test_knn_fills_and_lists_each_cells_donors_by_subject_and_visit() -> None:
    observed = visits()
    result = fill_with_donors(observed, n_neighbors=4, label_levels=["USUBJID", "VISITNUM", "VISIT"])
    # FastKNNImputer's values (scikit-learn's, ties at the k-th donor by fit-row index: see test_knn_*)
    np.testing.assert_array_equal(result.imputed.to_numpy(), FastKNNImputer(n_neighbors=4).fit_transform(observed))
    donors = result.donors
    assert list(donors.columns[:4]) == ["USUBJID", "VISITNUM", "VISIT", "VARIABLE"]
    assert {"DONOR_USUBJID", "DONOR_VISITNUM", "DONOR_VISIT", "DONOR_RANK", "DISTANCE"} <= set(donors.columns)
    gaps = observed.isna().to_numpy()
    assert donors.groupby(["USUBJID", "VISITNUM", "VARIABLE"]).ngroups == gaps.sum()
    flat = observed.reset_index()
    x = observed.to_numpy()
    for (subject, visit, variable), cell in donors.groupby(["USUBJID", "VISITNUM", "VARIABLE"]):
        i = flat.index[(flat["USUBJID"] == subject) & (flat["VISITNUM"] == visit)][0]
        if cell["METHOD"].iloc[0] == "pool_mean":  # shares no observed variable with any donor: the mean
            assert len(cell) == 1 and cell["DONOR_USUBJID"].isna().all()
            assert cell["FILLED_VALUE"].iloc[0] == pytest.approx(observed[variable].mean())
            continue
        assert cell["DONOR_RANK"].tolist() == [1, 2, 3, 4] and cell["DISTANCE"].is_monotonic_increasing
        donor_rows = [flat.index[(flat["USUBJID"] == s) & (flat["VISITNUM"] == v)][0]
                      for s, v in zip(cell["DONOR_USUBJID"], cell["DONOR_VISITNUM"], strict=True)]
        diff = x[donor_rows] - x[i]  # nan-Euclidean, exact (scikit-learn's expansion rounds 0 to ~1e-6 here)
        common = ~np.isnan(diff)
        exact = np.sqrt(np.where(common, diff, 0.0) ** 2 @ np.ones(3) * 3 / common.sum(axis=1))
        np.testing.assert_allclose(cell["DISTANCE"], exact, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(cell["DONOR_VALUE"], observed.iloc[donor_rows][variable])
        assert observed.iloc[donor_rows][variable].notna().all()  # donors observe the variable
        assert cell["FILLED_VALUE"].iloc[0] == pytest.approx((cell["WEIGHT"] * cell["DONOR_VALUE"]).sum())
        assert result.imputed.iloc[i][variable] == pytest.approx(cell["FILLED_VALUE"].iloc[0])


def test_closest_imputation_is_a_study_option_whatever_wins_the_benchmark() -> None:
    cfg = StudyConfig.model_validate({"imputation": {"fill": "knn", "params": {"knn": {"n_neighbors": 3}}}})
    plan = fill_plan(cfg.imputation.fill, "mice", {}, "mice: RMSE 0.10", cfg.imputation.params)
    assert (plan.imputer, plan.params) == ("knn", {"n_neighbors": 3})
    assert "imputation.fill: knn" in plan.reason and "mice: RMSE 0.10" in plan.reason
    default = fill_plan(StudyConfig().imputation.fill, "mice", {"max_iter": 5}, "mice: RMSE 0.10", {})
    assert (default.imputer, default.params) == ("mice", {"max_iter": 5})
    with pytest.raises(ValueError, match="fill must be one of"):
        fill_plan("nearest", "mice", {}, "", {})
    with pytest.raises(ValueError, match="imputation.fill"):
        StudyConfig.model_validate({"imputation": {"fill": "nearest"}})


def test_unnamed_index_levels_are_refused() -> None:
    observed = visits(5).reset_index(drop=True)
    with pytest.raises(ValueError, match="index level needs a name"):
        fill_with_donors(observed)
