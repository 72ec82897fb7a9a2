"""Kaplan-Meier retention (models/rbqm/km.py) and the QTL table (models/rbqm/qtl.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models.rbqm import KRIS, KaplanMeier, discontinuation_times, km_by_group, qtl_table

# Freireich et al. (1963) 6-MP arm, the textbook KM example (Kleinbaum & Klein, Survival Analysis,
# ch. 2; R survival / lifelines give the same): weeks in remission, False = censored.
SIX_MP_TIME = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
SIX_MP_EVENT = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
# published S(t), 95 % log-log limits, at risk and events at each event time
SIX_MP_TABLE = [  # t, S, lower, upper, at risk, events
    (6, 0.857, 0.620, 0.952, 21, 3), (7, 0.807, 0.563, 0.923, 17, 1), (10, 0.753, 0.503, 0.889, 15, 1),
    (13, 0.690, 0.432, 0.849, 12, 1), (16, 0.627, 0.368, 0.805, 11, 1), (22, 0.538, 0.268, 0.747, 7, 1),
    (23, 0.448, 0.188, 0.680, 6, 1),
]


def test_kaplan_meier_matches_the_published_6mp_table() -> None:
    km = KaplanMeier().fit(np.array(SIX_MP_TIME, float), np.array(SIX_MP_EVENT, bool))
    at_event = km.events_ > 0
    got = np.c_[km.timeline_[at_event], km.survival_[at_event], km.ci_lower_[at_event], km.ci_upper_[at_event],
                km.at_risk_[at_event], km.events_[at_event]]
    np.testing.assert_allclose(got, np.array(SIX_MP_TABLE, float), atol=5e-4)
    assert km.n_subjects_ == 21 and km.censored_.sum() == 12


def test_hand_computed_small_example_with_ties() -> None:
    # times 2, 3, 3, 3+, 5+, 8: at 2 -> 5/6; at 3 (5 at risk, 2 events; the tied censoring is
    # still at risk) -> 5/6 * 3/5 = 1/2; 5+ censored; at 8 (1 at risk, 1 event) -> 0.
    km = KaplanMeier().fit(np.array([2, 3, 3, 3, 5, 8.]), np.array([1, 1, 1, 0, 0, 1], bool))
    table = km.table()
    assert table["time_days"].tolist() == [0, 2, 3, 5, 8]
    assert table["survival"].tolist() == pytest.approx([1, 5 / 6, 1 / 2, 1 / 2, 0])
    assert table["at_risk"].tolist() == [6, 6, 5, 2, 1]
    assert table["events"].tolist() == [0, 1, 2, 0, 1]
    assert table["censored"].tolist() == [0, 0, 1, 1, 0]
    # Greenwood at t=3: var = S^2 * (1/(6*5) + 2/(5*3)); log-log limits S^exp(-/+ 1.96 se/log S)
    se = np.sqrt(1 / 30 + 2 / 15) / abs(np.log(0.5))
    assert table.loc[2, ["ci_lower", "ci_upper"]].tolist() == pytest.approx(
        [0.5 ** np.exp(1.959964 * se), 0.5 ** np.exp(-1.959964 * se)], rel=1e-5)
    assert np.isnan(table.loc[4, "ci_lower"])  # undefined once S reaches 0
    assert km.predict(np.array([0, 1.9, 2, 4, 100])).tolist() == pytest.approx([1, 1, 5 / 6, 1 / 2, 0])


def test_no_event_keeps_survival_at_one() -> None:
    table = KaplanMeier().fit(np.array([4.0, 9.0]), np.array([False, False])).table()
    assert table["survival"].tolist() == [1, 1, 1]
    assert table[["ci_lower", "ci_upper"]].to_numpy().min() == 1


@pytest.mark.parametrize(("durations", "events", "message"), [
    ([], [], "non-empty"),
    ([1.0, -2.0], [True, False], ">= 0"),
    ([1.0, np.nan], [True, False], "finite"),
    ([1.0, 2.0], [True], "shape"),
    ([1.0, 2.0], [2, 0], "boolean"),
])
def test_kaplan_meier_rejects_bad_input(durations: list, events: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KaplanMeier().fit(np.array(durations, float), np.array(events))


def test_unfitted_and_bad_parameters() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        KaplanMeier().predict(np.array([1.0]))
    with pytest.raises(ValueError, match="confidence_level"):
        KaplanMeier(confidence_level=1.5).fit(np.array([1.0]), np.array([True]))


def _sdtm() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    dm = pl.DataFrame({
        "USUBJID": ["S1", "S2", "S3", "S4", "S5", "S6"],
        "ARM": ["Placebo", "Placebo", "Drug", "Drug", "Screen Failure", "Drug"],
        "ARMCD": ["PBO", "PBO", "DRG", "DRG", "SCRNFAIL", "DRG"],
        "RFSTDTC": ["2024-01-10", "2024-01-10", None, "2024-02-01", None, "2024-03"],
        "RFENDTC": [None, None, None, None, None, None],
    })
    ds = pl.DataFrame({
        "USUBJID": ["S1", "S2", "S3", "S3", "S5", "S6"],
        "DSSEQ": [1.0, 1.0, 1.0, 2.0, 1.0, 1.0],
        "DSDECOD": ["ADVERSE EVENT", "COMPLETED", "RANDOMIZED", "LOST TO FOLLOW-UP", "SCREEN FAILURE", "COMPLETED"],
        "DSCAT": ["DISPOSITION EVENT", "DISPOSITION EVENT", "PROTOCOL MILESTONE", "DISPOSITION EVENT",
                  "DISPOSITION EVENT", "DISPOSITION EVENT"],
        "DSSTDTC": ["2024-01-20", "2024-07-10", "2024-01-05", "2024-02-04", "2024-01-02", "2024-09-01"],
    })
    sv = pl.DataFrame({"USUBJID": ["S4", "S4"], "SVSTDTC": ["2024-02-01", "2024-03-15"], "SVENDTC": [None, "2024-03-16"]})
    return dm, ds, sv


def test_discontinuation_times_from_sdtm() -> None:
    got = discontinuation_times(*_sdtm()).set_index("usubjid")
    # S5 is a screen failure: left out. S1 discontinued at day 10; S2 completed (censored) at
    # day 182; S3 has no first dose: origin = its RANDOMIZED milestone, lost at day 30; S4 is
    # ongoing: censored at its last contact (SV end 2024-03-16, day 44); S6's partial first
    # dose date leaves its time unknown.
    assert list(got.index) == ["S1", "S2", "S3", "S4", "S6"]
    assert got["time_days"].tolist()[:4] == [10, 182, 30, 44] and np.isnan(got.loc["S6", "time_days"])
    assert got["event"].tolist() == [True, False, True, False, False]
    assert got.loc["S3", "end_reason"] == "LOST TO FOLLOW-UP" and pd.isna(got.loc["S4", "end_reason"])


def test_km_by_group_per_arm() -> None:
    table = km_by_group(discontinuation_times(*_sdtm()))
    placebo = table[table["arm"] == "Placebo"]
    assert placebo["survival"].tolist() == [1.0, 0.5, 0.5]  # 1 of 2 discontinued at day 10
    drug = table[table["arm"] == "Drug"]  # S3 event at 30, S4 censored at 44 (S6 left out)
    assert drug[["time_days", "survival", "at_risk"]].to_numpy().tolist() == [[0, 1, 2], [30, 0.5, 2], [44, 0.5, 1]]
    empty = km_by_group(discontinuation_times(*_sdtm()).iloc[:0])
    assert len(empty) == 0 and list(empty.columns)[:3] == ["arm", "time_days", "survival"]


def test_qtl_table_validates_limits() -> None:
    qtl = SimpleNamespace
    table = qtl_table([qtl(name="dropouts", kri="discontinuation_rate", limit=0.25, direction="above")], "S.yaml")
    assert table.to_dicts() == [{"qtl_name": "dropouts", "kri": "discontinuation_rate", "qtl_limit": 0.25,
                                 "direction": "above", "config_file": "S.yaml"}]
    assert qtl_table([]).height == 0 and qtl_table([]).schema["qtl_limit"] == pl.Float64
    bad = [
        ([qtl(name="x", kri="nope", limit=1, direction="above")], "unknown kri 'nope'"),
        ([qtl(name="x", kri="screen_fail_rate", limit=25, direction="above")], "fraction"),
        ([qtl(name="x", kri="ae_rate", limit=-1, direction="below")], ">= 0"),
        ([qtl(name="x", kri="ae_rate", limit=1, direction="sideways")], "direction"),
        ([qtl(name="a", kri="ae_rate", limit=1, direction="above"),
          qtl(name="b", kri="ae_rate", limit=2, direction="above")], "kri 'ae_rate'"),
    ]
    for qtls, message in bad:
        with pytest.raises(ValueError, match=message):
            qtl_table(qtls, "S.yaml")
    assert "discontinuation_rate" in KRIS
