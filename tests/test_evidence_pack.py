"""Evidence pack: tidy metric table, levels, JSON round trip, offline HTML report, CLI summary."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from models.evidence.pack import METRIC_COLUMNS, EvidencePack, build_evidence_pack, write_pack
from models.evidence.thresholds import DEFAULT_THRESHOLDS, resolve_thresholds
from trialsynth import cli

CATEGORICAL = ["SEX", "ARM", "RESPONSE"]
CONTEXT = {
    "tenant": "acme",
    "study": "s01",
    "model_id": "m1",
    "seed": 7,
    "data_sha256": "ab" * 32,
    "note": "<script>alert(1)</script>",
}


def cohort(n: int, seed: int) -> pd.DataFrame:
    """Subject-level table: float, datetime and categorical columns; RESPONSE depends on AGE and ARM."""
    rng = np.random.default_rng(seed)
    age = rng.normal(50, 10, n)
    arm = rng.choice(["A", "B", "P"], n)
    logit = (age - 50) / 5 + np.where(arm == "P", -1.0, 1.0)
    return pd.DataFrame(
        {
            "AGE": age,
            "WEIGHT": 70 + 0.5 * (age - 50) + rng.normal(0, 3, n),
            "RANDDT": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
            "SEX": rng.choice(["F", "M"], n),
            "ARM": arm,
            "RESPONSE": np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no"),
        }
    )


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    df = cohort(600, 0)
    df.loc[df.index % 10 == 0, "WEIGHT"] = np.nan  # missing values to impute
    return df


@pytest.fixture(scope="module")
def holdout() -> pd.DataFrame:
    return cohort(300, 1)


@pytest.fixture(scope="module")
def good_pack(real, holdout) -> EvidencePack:
    imputed = real.assign(WEIGHT=real["WEIGHT"].fillna(real["WEIGHT"].mean()))
    return build_evidence_pack(
        real,
        cohort(600, 2),
        holdout,
        CATEGORICAL,
        target="RESPONSE",
        imputed=imputed,
        run_id="run-good",
        context=CONTEXT,
        n_bootstrap=10,
    )


@pytest.fixture(scope="module")
def copied_pack(real, holdout) -> EvidencePack:
    return build_evidence_pack(
        real,
        real.copy(),
        holdout,
        CATEGORICAL,
        thresholds={"exact_copy_share": {"warn": 1.0, "fail": 1.0}},
        run_id="run-copied",
        context=CONTEXT,
    )


def test_metrics_frame_is_tidy_and_graded_with_the_thresholds(good_pack) -> None:
    frame = good_pack.metrics_frame()
    assert list(frame.columns) == METRIC_COLUMNS
    assert set(frame["level"]) <= {"pass", "warn", "fail"}
    resolved = resolve_thresholds()
    for row in frame.itertuples():
        assert (row.threshold_warn, row.threshold_fail) == (
            resolved[row.metric].warn,
            resolved[row.metric].fail,
        )
        expected = (resolved[row.metric].level(row.value) if np.isnan(row.ci_low)
                    else resolved[row.metric].level_of_interval(row.ci_low, row.ci_high))
        assert row.level == expected
    per_column = frame[frame["metric"] == "wasserstein"]
    assert sorted(per_column["variable"]) == ["AGE", "RANDDT", "WEIGHT"]
    assert frame.loc[frame["metric"] == "detection_auc", "variable"].tolist() == [None]
    assert frame.loc[frame["metric"] == "utility_ratio", "variable"].tolist() == ["RESPONSE"]
    assert set(DEFAULT_THRESHOLDS) <= set(frame["metric"])


def test_independent_draws_pass_and_copies_fail(good_pack, copied_pack) -> None:
    assert good_pack.overall_level == "pass"
    assert copied_pack.overall_level == "fail"
    copied = copied_pack.metrics_frame().set_index("metric")
    assert (
        copied.loc["wasserstein", "value"].max() == 0.0 and copied.loc["ks_statistic", "value"].max() == 0.0
    )
    assert copied.loc["detection_auc", "value"] == pytest.approx(0.5, abs=0.02)
    assert copied.loc["dcr_median_ratio", "level"] == "fail"
    # the study override lets exact copies through, the other privacy metrics still fail them
    assert (
        copied.loc["exact_copy_share", "value"] == 1.0 and copied.loc["exact_copy_share", "level"] == "pass"
    )


def test_summary_text_names_the_run_context_and_failures(good_pack, copied_pack) -> None:
    text = copied_pack.summary_text()
    assert text.splitlines()[0] == "Evidence pack run-copied: FAIL"
    assert "tenant: acme" in text and "model_id: m1" in text
    assert "FAIL mia_auc" in text and "FAIL exact_copy_share" not in text
    assert "utility (classification of RESPONSE)" in good_pack.summary_text()


def test_json_round_trip_is_strict_json_and_preserves_the_table(good_pack, tmp_path) -> None:
    path = good_pack.to_json(tmp_path / "evidence.json")
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["run_id"] == "run-good" and data["context"] == CONTEXT and data["overall_level"] == "pass"
    assert data["details"]["frames"]["imputed"]["rows"] == 600
    loaded = EvidencePack.from_json(path)
    pd.testing.assert_frame_equal(loaded.metrics_frame(), good_pack.metrics_frame())
    assert loaded.summary_text() == good_pack.summary_text()
    with pytest.raises(ValueError, match="no plot data"):
        loaded.to_html(tmp_path / "report.html")


def test_html_report_is_self_contained(good_pack, tmp_path) -> None:
    paths = write_pack(good_pack, tmp_path / "out")
    assert paths["json"].name == "evidence.json" and paths["json"].is_file()
    page = paths["html"].read_text()
    assert not re.search(r"https?://", page, re.IGNORECASE)
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == 6 + 3  # one overlay per column, correlations, DCR histogram, PCA
    for row in good_pack.metrics_frame().itertuples():
        assert f'<tr class="{row.level}"><td>{row.metric}</td>' in page
    for value in ("acme", "s01", "m1", "ab" * 32):
        assert value in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)" in page  # context is escaped


def test_same_seed_gives_the_same_metrics(real, holdout) -> None:
    def build() -> pd.DataFrame:
        pack = build_evidence_pack(real.head(150), cohort(150, 4), holdout.head(80), CATEGORICAL, run_id="r")
        return pack.metrics_frame()

    pd.testing.assert_frame_equal(build(), build())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"run_id": ""}, "run_id must be a non-empty string"),
        ({"run_id": "r", "target": "NOPE"}, "target 'NOPE' is not a column"),
        ({"run_id": "r", "thresholds": {"nope": {"warn": 1}}}, "unknown evidence metric 'nope'"),
        ({"run_id": "r", "categorical": ["SEX"]}, "column 'ARM' of real .* not numeric"),
    ],
)
def test_bad_input_raises_clear_errors(real, holdout, kwargs: dict, message: str) -> None:
    args = {"categorical": CATEGORICAL, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_evidence_pack(real, real, holdout, **args)


def test_cli_evidence_show_prints_the_summary(good_pack, settings, capsys) -> None:
    lake = settings.lake_dir  # the shared fixture points the settings at tmp_path
    run_dir = lake / "acme" / "s01" / "evidence" / "run-good"
    run_dir.mkdir(parents=True)
    good_pack.to_json(run_dir / "evidence.json")
    assert cli.main(["evidence", "show", "run-good"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Evidence pack run-good: PASS") and "tenant: acme" in out
    assert str(run_dir / "evidence.json") in out


def test_cli_evidence_show_explains_a_missing_run(settings, capsys) -> None:
    assert cli.main(["evidence", "show", "run-missing"]) == 2
    err = capsys.readouterr().err
    assert "no evidence pack for run 'run-missing'" in err and str(settings.lake_dir) in err
