"""DP synthesizers as a user meets them: seeded and reproducible, exact strata, leaking preprocessing
refused, a DP domain estimate that never publishes the extremes or the rare, and the evidence pack
stating the guarantee (or "none")."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from models.evidence import build_evidence_pack
from models.evidence.report import render_html
from models.synth import TableSchema
from models.synth.dp import DPGaussianCopulaSynthesizer, MSTSynthesizer
from tests.test_synth_dp_mechanisms import COLUMNS, trial_table

DP_MODELS = [DPGaussianCopulaSynthesizer, MSTSynthesizer]


@pytest.mark.parametrize("cls", DP_MODELS)
def test_seeded_runs_are_byte_identical(cls) -> None:
    df = trial_table()
    first, second = (cls(epsilon=1.0, columns=COLUMNS, random_state=11).fit(df) for _ in range(2))
    assert pickle.dumps(first) == pickle.dumps(second)
    pd.testing.assert_frame_equal(first.sample(300, random_state=4), second.sample(300, random_state=4))
    other = cls(epsilon=1.0, columns=COLUMNS, random_state=12).fit(df)
    assert not first.sample(300, random_state=4).equals(other.sample(300, random_state=4))


@pytest.mark.parametrize("cls", DP_MODELS)
def test_conditional_sampling_gives_exact_strata(cls) -> None:
    df = trial_table()
    model = cls(epsilon=1.0, columns=COLUMNS, random_state=0).fit(df)
    rows = model.sample(250, conditions={"ARM": "C", "SEX": "M"}, random_state=1)  # the rarest arm
    assert len(rows) == 250 and (rows["ARM"] == "C").all() and (rows["SEX"] == "M").all()
    assert rows["AGE"].dropna().between(18, 90).all() and rows["SYSBP"].dropna().between(60, 220).all()
    with pytest.raises(ValueError, match="not in its public categories"):
        model.sample(5, conditions={"ARM": "D"})
    with pytest.raises(ValueError, match="not a categorical/ordinal column"):
        model.sample(5, conditions={"AGE": 60})


@pytest.mark.parametrize("cls", DP_MODELS)
def test_strong_dependence_survives_a_large_budget(cls) -> None:
    df = trial_table(2000)
    rows = cls(epsilon=10.0, columns=COLUMNS, random_state=0).fit(df).sample(2000, random_state=1)
    real = df["AGE"].corr(df["SYSBP"])
    assert rows["AGE"].astype(float).corr(rows["SYSBP"]) > 0.6 * real
    assert abs(rows["SYSBP"].isna().mean() - df["SYSBP"].isna().mean()) < 0.05
    assert abs((rows["ARM"] == "C").mean() - (df["ARM"] == "C").mean()) < 0.05


@pytest.mark.parametrize("cls", DP_MODELS)
def test_leaking_preprocessing_is_refused(cls) -> None:
    df = trial_table(200)
    with pytest.raises(ValueError, match="schema: a DP synthesizer takes its domain from `columns`"):
        cls(columns=COLUMNS).fit(df, TableSchema.infer(df))
    with pytest.raises(ValueError, match=r"columns \['AGE', 'SYSBP'\]: no public bounds/categories.*raw min/max"):
        cls(columns={k: COLUMNS[k] for k in ("ARM", "SEX")}).fit(df)
    with pytest.raises(ValueError, match="delta must be below 1/n_rows"):
        cls(delta=0.01, columns=COLUMNS).fit(df)
    with pytest.raises(ValueError, match="columns: \\['VISIT'\\] are not columns"):
        cls(columns={**COLUMNS, "VISIT": {"categories": ["W1"]}}).fit(df)
    with pytest.raises(ValueError, match="convert dates to study days"):
        cls(columns=COLUMNS).fit(df.assign(RFSTDTC=pd.Timestamp("2025-01-01")))


def test_the_dp_domain_estimate_hides_extremes_and_rare_categories() -> None:
    df = trial_table(2000)  # the smallest arm has ~200 subjects: discoverable at epsilon 2
    df.loc[0, "SYSBP"] = 1_000_000.0  # one extreme subject
    df.loc[1, "ARM"] = "RARE"  # one subject in a category nobody else has
    model = MSTSynthesizer(epsilon=2.0, estimate_domain=True, random_state=0).fit(df)
    assert model.schema_["SYSBP"].max_value <= 256 and model.schema_["SYSBP"].min_value >= 32
    assert "RARE" not in model.schema_["ARM"].categories and set(model.schema_["ARM"].categories) == {"A", "B", "C"}
    assert model.privacy_["delta_threshold"] == pytest.approx(0.5e-6)
    assert model.privacy_["measurements"][0]["label"].startswith("domain estimate of ['ARM', 'SEX', 'AGE', 'SYSBP']")
    rows = model.sample(2000, random_state=0)
    assert rows["SYSBP"].max() <= 256 and "RARE" not in set(rows["ARM"])


def test_a_column_the_estimate_cannot_resolve_is_sampled_as_missing() -> None:
    df = trial_table(300).assign(HBA1C=np.nan)
    df.loc[:2, "HBA1C"] = 6.5  # three subjects: below what a DP estimate can see
    model = DPGaussianCopulaSynthesizer(epsilon=1.0, columns=COLUMNS, estimate_domain=True, random_state=0).fit(df)
    assert "HBA1C" in model.dropped_columns_ and "HBA1C" not in model.schema_
    rows = model.sample(50, random_state=0)
    assert list(rows.columns) == list(df.columns) and rows["HBA1C"].isna().all()


def test_the_evidence_pack_states_the_guarantee_or_none() -> None:
    df = trial_table(160)[["ARM", "AGE"]]
    train, holdout = df.iloc[:120].reset_index(drop=True), df.iloc[120:].reset_index(drop=True)
    model = MSTSynthesizer(epsilon=1.0, columns={k: COLUMNS[k] for k in ("ARM", "AGE")}, random_state=0).fit(train)
    synthetic = model.sample(120, random_state=0)
    dp = build_evidence_pack(train, synthetic, holdout, ["ARM"], run_id="dp", privacy_guarantee=model.privacy_)
    section = dp.details["privacy_guarantee"]
    assert section["guarantee"] == "(epsilon=1, delta=1e-06)-differential privacy" and section["mechanism"] == "mst"
    assert [m["measurement"] for m in section["budget_split"]][0] == "one-way marginals (histogram per column)"
    assert "privacy guarantee: (epsilon=1, delta=1e-06)-differential privacy (mst)" in dp.summary_text()
    html = render_html(dp)
    assert "Privacy guarantee" in html and "not differentially private: share the cohort" in html
    plain = build_evidence_pack(train, synthetic, holdout, ["ARM"], run_id="plain")
    assert plain.details["privacy_guarantee"]["guarantee"] == "none"
    assert "privacy guarantee: none" in plain.summary_text()
