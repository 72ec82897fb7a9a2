"""Design files (data/designs/<study>.yaml) -> curves and recommendations; validation messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.design import ContinuousDesign, load_design_file, run_design_file
from models.design.scenarios import RECOMMENDATION_COLUMNS, SCENARIO_CURVE_COLUMNS

DESIGNS = Path(__file__).resolve().parent.parent / "data" / "designs"


@pytest.fixture(scope="module", params=["ACME-001", "CDISCPILOT01"])
def result(request):
    return run_design_file(DESIGNS / f"{request.param}.yaml", seed=7, n_trials=200)


def test_example_files_give_one_recommendation_per_scenario(result):
    recs = result.recommendations
    assert list(recs.columns) == RECOMMENDATION_COLUMNS
    assert list(recs["scenario"]) == [s.name for s in result.design_file.scenarios]
    assert set(recs["endpoint"]) == {"continuous", "binary", "tte"}
    assert recs["events"].isna().tolist() == (recs["endpoint"] != "tte").tolist()
    assert (recs["total_enrol"] >= recs["total_n"]).all()
    assert (recs["analytic_power"] >= recs["target_power"]).all()
    for scenario, row in zip(result.design_file.scenarios, recs.itertuples(), strict=True):
        size = scenario.design.sample_size(scenario.target_power)
        assert (row.n_per_arm_control, row.total_enrol) == (size.n_control, size.total_enrol)
        assert 0 <= row.simulated_power <= 1 and row.simulated_mc_se > 0


def test_example_files_give_both_curve_axes_and_methods(result):
    curves = result.curves
    assert list(curves.columns) == SCENARIO_CURVE_COLUMNS
    groups = curves.groupby(["scenario", "axis", "method"]).size()
    assert len(groups) == 4 * len(result.design_file.scenarios)
    assert curves.loc[curves["method"] == "analytic", "mc_se"].isna().all()
    assert curves.loc[curves["method"] == "simulation", "mc_se"].notna().all()
    assert curves["power"].between(0, 1).all()
    for _, part in curves[(curves["axis"] == "n_per_arm") & (curves["method"] == "analytic")].groupby(
        "scenario"
    ):
        assert np.all(np.diff(part.sort_values("x")["power"]) > 0)


def test_same_seed_reproduces_and_seed_is_reported(tmp_path):
    path = _write(tmp_path, TWO_ENDPOINTS)
    a = run_design_file(path, seed=3, n_trials=200)
    b = run_design_file(path, seed=3, n_trials=200)
    c = run_design_file(path, seed=4, n_trials=200)
    pd.testing.assert_frame_equal(a.curves, b.curves)
    pd.testing.assert_frame_equal(a.recommendations, b.recommendations)
    assert (a.recommendations["seed"] != c.recommendations["seed"]).all()
    assert a.recommendations["seed"].nunique() == len(a.recommendations)


def test_analytic_only_run_and_plots(tmp_path):
    res = run_design_file(_write(tmp_path, TWO_ENDPOINTS), seed=1, n_trials=0)
    assert res.recommendations["simulated_power"].isna().all()
    assert set(res.curves["method"]) == {"analytic"}
    paths = res.write_plots(tmp_path / "plots")
    assert [p.name for p in paths] == ["STUDY-X_a.png", "STUDY-X_r.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "STUDY-X.yaml"
    path.write_text(textwrap.dedent(text))
    return path


MINIMAL = """
    study: STUDY-X
    defaults: {alpha: 0.05, dropout: 0.1}
    scenarios:
      - {name: a, endpoint: continuous, effect: 0.5}
"""


TWO_ENDPOINTS = """
    study: STUDY-X
    simulation: {curve_points: 3}
    scenarios:
      - {name: a, endpoint: continuous, effect: 0.5, dropout: 0.1}
      - {name: r, endpoint: binary, p_control: 0.3, p_treatment: 0.5}
"""


def test_defaults_apply_unless_the_scenario_overrides(tmp_path):
    path = _write(tmp_path, MINIMAL + "      - {name: b, endpoint: continuous, effect: 0.5, dropout: 0.2}\n")
    designs = [s.design for s in load_design_file(path).scenarios]
    assert designs == [ContinuousDesign(effect=0.5, dropout=0.1), ContinuousDesign(effect=0.5, dropout=0.2)]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("study: S\nscenarios:\n  - {name: a, endpoint: continuous}\n", r"scenarios\[0\]\.effect"),
        (
            "study: S\nscenarios:\n  - {name: a, endpoint: continuous, effect: 1, sdd: 2}\n",
            r"scenarios\[0\]\.sdd",
        ),
        ("study: S\nscenarios:\n  - {name: a, endpoint: survival, hr: 0.7}\n", r"scenarios\[0\]"),
        ("study: S\nscenarios:\n  - {name: a, endpoint: tte, hr: 0.7}\n", r"scenarios\[0\]\.control_median"),
        ("study: S\nscenarios: []\n", "scenarios"),
        ("scenarios:\n  - {name: a, endpoint: continuous, effect: 1}\n", "study"),
        (
            "study: S\ndefaults: {effect: 1}\nscenarios:\n  - {name: a, endpoint: continuous}\n",
            r"defaults\.effect",
        ),
        (
            "study: S\nsimulation: {n_trials: -5}\nscenarios:\n  - {name: a, endpoint: continuous, effect: 1}\n",
            "n_trials",
        ),
        (
            "study: S\nscenarios:\n  - {name: a, endpoint: continuous, effect: 1, alpha: 2}\n",
            r"scenarios\[0\] \('a'\): alpha",
        ),
        (
            "study: S\nscenarios:\n  - {name: r, endpoint: binary, p_control: 0.4, p_treatment: 1.3}\n",
            "p_treatment",
        ),
        (
            "study: S\nscenarios:\n  - {name: t, endpoint: tte, hr: 1, control_median: 9, accrual: 1, follow_up: 1}\n",
            "hr",
        ),
        (
            "study: S\nscenarios:\n  - {name: a, endpoint: continuous, effect: 1}\n"
            "  - {name: a, endpoint: continuous, effect: 2}\n",
            r"scenarios\[1\] \('a'\)\.name: duplicate",
        ),
        (
            "study: S\nscenarios:\n  - {name: a, endpoint: continuous, effect: 1, baseline: {table: cohort, column: X}}\n",
            r"baseline\.table",
        ),
        ("- just a list\n", "mapping"),
        ("study: [unclosed\n", "YAML"),
    ],
)
def test_bad_design_file_names_file_and_key(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=key) as info:
        load_design_file(path)
    assert str(path) in str(info.value)


def test_missing_design_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        run_design_file(tmp_path / "nope.yaml", seed=0)


def test_baseline_table_is_resampled(tmp_path):
    path = _write(
        tmp_path,
        """
        study: STUDY-X
        simulation: {n_trials: 300, curve_points: 2}
        scenarios:
          - name: adjusted
            endpoint: continuous
            effect: 0.4
            analysis: ancova
            baseline_correlation: 0.5
            dropout: 0.2
            dropout_mechanism: mar
            baseline: {table: synthetic_cohort, column: SYSBP}
        """,
    )
    table = pd.DataFrame({"SYSBP": np.random.default_rng(0).normal(140, 15, 300)})
    res = run_design_file(path, seed=0, baseline_tables={"synthetic_cohort": table})
    assert res.design_file.scenarios[0].simulation["cohort"].column == "SYSBP"
    assert len(res.curves[res.curves["method"] == "simulation"]) == 4
    with pytest.raises(ValueError, match=r"baseline\.column"):
        load_design_file(path, baseline_tables={"synthetic_cohort": table.rename(columns={"SYSBP": "X"})})
