"""The generated demo study through the whole study pipeline (sensor -> ingest -> analytics -> dbt),
on a small study with a fast configuration; approval gating of the synthetic cohort included: a study
waiting for approval ends its run as SUCCESS with the waiting line, reuses its draft, and generates
once the draft is approved."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pandas as pd
import pytest

from tests.conftest import fast_study_config
from trialsynth.artifacts import read_evidence
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


def _events_of(instance: dg.DagsterInstance, run_id: str, asset: str) -> list[dict]:
    """Metadata of the run's materializations of ``asset``."""
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return [{k: getattr(v, "value", v) for k, v in e.dagster_event.step_materialization_data.materialization.metadata.items()}
            for e in events if e.dagster_event.asset_key == dg.AssetKey(asset)]


def test_demo_study_end_to_end_with_approval_gate(demo_run, capsys):
    settings, outcomes = demo_run
    (outcome,) = outcomes
    lake = settings.study_dir("acme", "ACME-001")
    registry = ModelRegistry(settings.registry_sqlalchemy_url)
    (model,) = registry.list(kind="synthesizer")
    # a draft model does not fail the run: it waits for approval, naming the model and the way out
    assert outcome.status == "SUCCESS", outcome.summary
    waiting = f"waiting for approval of model {model.id}: approve with `trialsynth registry approve {model.id}"
    assert any("model_approved" in line and waiting in line for line in outcome.summary), outcome.summary
    assert any(line.startswith("skipped") and "evidence_pack" in line for line in outcome.summary), outcome.summary
    assert not (lake / "synthesis" / "synthetic_cohort.parquet").exists() and not (lake / "evidence").exists()
    # ... while everything that does not depend on the cohort, the star schema and marts included, was built
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    assert con.execute("select count(*) from dim_subject where tenant_id = 'acme'").fetchone()[0] == 160
    assert con.execute("select count(*) from mart_power_curves where tenant_id = 'acme'").fetchone()[0] > 0
    con.close()

    little = pd.read_parquet(lake / "missingness" / "little.parquet")
    assert set(little["variable_group"]) == {"LB", "VS"} and little["p_value"].between(0, 1).all()
    choice = json.loads((lake / "imputation" / "choice.json").read_text())
    assert choice["imputer"] in {"mean", "knn"} and "RMSE" in choice["reason"]
    imputed = pd.read_parquet(lake / "imputation" / "imputed_dataset.parquet")
    assert imputed["VALUE"].notna().all() and imputed["IMPUTED"].any()  # no silent NaN, gaps filled
    recs = pd.read_parquet(lake / "design" / "recommendations.parquet")
    assert len(recs) == 4 and (recs["total_enrol"] >= recs["total_n"]).all()

    # the same drop again: already ingested, nothing approved, nothing to do
    assert [o.status for o in process_landing_zone(log=lambda _m: None)] == ["SKIPPED"]
    # synthesis materialized again on the same data (as from the UI): the draft is reused, not retrained
    from orchestration.definitions import defs

    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("study_pipeline")
    again = job.get_subset(asset_selection={dg.AssetKey(k) for k in SYNTHESIS_ASSETS}).execute_in_process(
        instance=instance, partition_key="acme|ACME-001", raise_on_error=False)
    assert again.success
    assert _events_of(instance, again.run_id, "synthesizer_model")[0]["training"] == f"reused model {model.id}"
    assert [m.id for m in registry.list(kind="synthesizer")] == [model.id]
    (check,) = again.get_asset_check_evaluations()
    assert (check.check_name, check.passed, check.severity) == ("model_approved", False, dg.AssetCheckSeverity.WARN)
    assert not (lake / "synthesis" / "synthetic_cohort.parquet").exists()

    assert main(["registry", "approve", model.id, "--by", "qa-statistician", "--why", "evidence reviewed"]) == 0
    # the next runner call generates the cohort, the evidence pack and its marts from that same model
    (generated,) = process_landing_zone(log=lambda _m: None)[1:]
    assert generated.status == "SUCCESS" and not any("model_approved" in line for line in generated.summary)
    assert [m.id for m in registry.list(kind="synthesizer")] == [model.id]
    cohort = pd.read_parquet(lake / "synthesis" / "synthetic_cohort.parquet")
    assert len(cohort) == 80 and (cohort["ARM"] == "Placebo").all()
    assert process_landing_zone(log=lambda _m: None)[1:] == []  # generated once, not on every call

    records = LocalLineageStore(settings.lake_dir).read("acme", "ACME-001")
    assert verify_chain(records).ok
    gen = [r for r in records if r["asset_key"] == "synthetic_cohort"]
    assert len(gen) == 1 and gen[0]["parameters"]["model_id"] == model.id and gen[0]["seed"] == 3
    assert gen[0]["input_sha256s"]["training_data"] == model.training_data_sha256

    (pack_dir,) = [p for p in (lake / "evidence").iterdir() if (p / "evidence.json").exists()]
    html = read_evidence(pack_dir / "report.html").decode()  # encrypted at rest with the tenant's key
    assert "data:image/png;base64" in html and "http://" not in html and "https://" not in html
    assert main(["evidence", "show", pack_dir.name]) == 0
    assert "wasserstein" in capsys.readouterr().out.lower()

    # the evidence marts are built from the pack by the nightly refresh job
    refresh = defs.resolve_job_def("marts_refresh")
    assert refresh.execute_in_process(instance=instance, partition_key="acme|ACME-001").success
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    levels = con.execute("select distinct alert_level from mart_wasserstein where tenant_id = 'acme'").fetchall()
    assert levels and {lvl for (lvl,) in levels} <= {"pass", "warn", "fail"}
