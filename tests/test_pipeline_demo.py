"""The generated demo study through the whole study pipeline (sensor -> ingest -> analytics -> dbt),
on a small study with a fast configuration; approval gating of the synthetic cohort included."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pandas as pd
import pytest

from tests.conftest import fast_study_config
from trialsynth.cli import main
from trialsynth.demo.generator import generate_study, write_drop
from trialsynth.lineage import LocalLineageStore, verify_chain
from trialsynth.registry import ModelRegistry
from trialsynth.runner import process_landing_zone
from trialsynth.settings import get_settings

STUDY_YAML = """
seed: 3
imputation: {candidates: [mean, knn], repeats: 1, rate: 0.2}
synthesis: {synthesizer: copula, n: 80, conditions: {ARM: Placebo}, allow_unapproved: false}
evidence: {target: SEX}
"""
SYNTHESIS_ASSETS = ["synthesizer_model", "synthetic_cohort", "evidence_pack"]


@pytest.fixture
def demo_run(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIALSYNTH_STUDIES_DIR", str(fast_study_config(tmp_path / "studies", "ACME-001", STUDY_YAML)))
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home_path))
    get_settings.cache_clear()
    tables = generate_study("acme", "ACME-001", n_subjects=160, n_sites=4, seed=5)
    write_drop(tables, settings.landing_dir, "acme", "ACME-001")
    return get_settings(), process_landing_zone(log=lambda _m: None)


def test_demo_study_end_to_end_with_approval_gate(demo_run, capsys):
    settings, outcomes = demo_run
    (outcome,) = outcomes
    # the synthetic cohort refuses a draft model: the run fails there, naming the way out
    assert outcome.status == "FAILURE"
    assert any("synthetic_cohort" in line and "approve" in line for line in outcome.summary), outcome.summary
    # ... while everything that does not depend on the cohort, the star schema and marts included, was built
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    assert con.execute("select count(*) from dim_subject where tenant_id = 'acme'").fetchone()[0] == 160
    assert con.execute("select count(*) from mart_power_curves where tenant_id = 'acme'").fetchone()[0] > 0
    con.close()

    lake = settings.study_dir("acme", "ACME-001")
    little = pd.read_parquet(lake / "missingness" / "little.parquet")
    assert set(little["variable_group"]) == {"LB", "VS"} and little["p_value"].between(0, 1).all()
    choice = json.loads((lake / "imputation" / "choice.json").read_text())
    assert choice["imputer"] in {"mean", "knn"} and "RMSE" in choice["reason"]
    imputed = pd.read_parquet(lake / "imputation" / "imputed_dataset.parquet")
    assert imputed["VALUE"].notna().all() and imputed["IMPUTED"].any()  # no silent NaN, gaps filled
    recs = pd.read_parquet(lake / "design" / "recommendations.parquet")
    assert len(recs) == 4 and (recs["total_enrol"] >= recs["total_n"]).all()

    registry = ModelRegistry(settings.registry_sqlalchemy_url)
    (model,) = registry.list(kind="synthesizer")
    registry.approve(model.id, by="qa-statistician", why="evidence reviewed in test")
    from orchestration.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.get()
    result = job.get_subset(asset_selection={dg.AssetKey(k) for k in SYNTHESIS_ASSETS[1:]}).execute_in_process(
        instance=instance, partition_key="acme|ACME-001", raise_on_error=False)
    assert result.success
    cohort = pd.read_parquet(lake / "synthesis" / "synthetic_cohort.parquet")
    assert len(cohort) == 80 and (cohort["ARM"] == "Placebo").all()

    records = LocalLineageStore(settings.lake_dir).read("acme", "ACME-001")
    assert verify_chain(records).ok
    gen = [r for r in records if r["asset_key"] == "synthetic_cohort"][-1]
    assert gen["parameters"]["model_id"] == model.id and gen["seed"] == 3
    assert gen["input_sha256s"]["training_data"] == model.training_data_sha256

    (pack_dir,) = [p for p in (lake / "evidence").iterdir() if (p / "evidence.json").exists()]
    html = (pack_dir / "report.html").read_text()
    assert "data:image/png;base64" in html and "http://" not in html and "https://" not in html
    assert main(["evidence", "show", pack_dir.name]) == 0
    assert "wasserstein" in capsys.readouterr().out.lower()

    # the evidence marts are built from the pack by the nightly refresh job
    refresh = defs.resolve_job_def("marts_refresh")
    assert refresh.execute_in_process(instance=instance, partition_key="acme|ACME-001").success
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    levels = con.execute("select distinct alert_level from mart_wasserstein where tenant_id = 'acme'").fetchall()
    assert levels and {lvl for (lvl,) in levels} <= {"pass", "warn", "fail"}
