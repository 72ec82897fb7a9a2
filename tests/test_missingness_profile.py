"""Missingness profile per variable x visit x site, and missing-data patterns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.missingness import missing_patterns, missingness_profile


def _long() -> pd.DataFrame:
    rows = []
    for site, subjects in {"S1": ["a", "b"], "S2": ["c", "d", "e"]}.items():
        for subj in subjects:
            for visit in ["V1", "V2"]:
                for var in ["SBP", "HR"]:
                    rows.append({"site": site, "usubjid": subj, "visit": visit, "param": var, "aval": 1.0})
    df = pd.DataFrame(rows)
    df.loc[(df.site == "S2") & (df.param == "HR"), "aval"] = np.nan  # HR never collected at S2
    df.loc[(df.usubjid == "a") & (df.visit == "V2") & (df.param == "SBP"), "aval"] = None
    return df


def test_percent_missing_per_variable_visit_site() -> None:
    out = missingness_profile(_long(), "param", "visit", "site", "aval").set_index(["variable", "visit", "site"])
    assert len(out) == 8
    assert out.loc[("HR", "V1", "S2"), ["n_expected", "n_missing"]].tolist() == [3, 3]
    assert out.loc[("HR", "V2", "S2"), "all_missing"]
    assert out.loc[("SBP", "V2", "S1"), "pct_missing"] == pytest.approx(50.0)
    assert out.loc[("SBP", "V1", "S1"), "pct_missing"] == 0.0 and not out.loc[("SBP", "V1", "S1"), "all_missing"]


def test_absent_rows_count_as_missing_with_a_subject_column() -> None:
    df = _long()
    df = df[~((df.usubjid == "e") & (df.visit == "V2"))]  # subject e missed visit 2 entirely
    without = missingness_profile(df, "param", "visit", "site", "aval").set_index(["variable", "visit", "site"])
    with_subj = missingness_profile(df, "param", "visit", "site", "aval", subject_col="usubjid").set_index(
        ["variable", "visit", "site"])
    assert without.loc[("SBP", "V2", "S2"), ["n_expected", "n_missing"]].tolist() == [2, 0]
    assert with_subj.loc[("SBP", "V2", "S2"), ["n_expected", "n_missing"]].tolist() == [3, 1]
    assert with_subj.loc[("SBP", "V2", "S1"), "n_missing"] == 1


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="'siteid'"):
        missingness_profile(_long(), "param", "visit", "siteid", "aval")


def test_missing_patterns_counts_and_shares() -> None:
    df = pd.DataFrame({"a": [1, np.nan, 3, np.nan], "b": [1, 2, 3, 4], "c": ["x", None, "z", None]})
    out = missing_patterns(df)
    assert out["pattern"].tolist() == ["111", "010"]  # most frequent first (tie: observed first)
    assert out["missing_columns"].tolist() == ["", "a, c"]
    assert out["count"].tolist() == [2, 2] and out["share"].sum() == pytest.approx(1.0)
    arr = missing_patterns(np.array([[1.0, np.nan], [np.nan, np.nan], [1.0, np.nan]]))
    assert arr.iloc[0][["pattern", "count", "n_missing_columns"]].tolist() == ["10", 2, 1]
    assert arr.iloc[1]["missing_columns"] == "column 0, column 1"
