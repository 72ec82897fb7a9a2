"""End to end through the API on a small demo study, with a real Dagster webserver and daemon: upload the
drop, train -> (generate refused while the model is a draft) -> approve -> generate with conditioning ->
evidence pack; then an imputation job with its lineage. Slow: each run starts a Dagster run process."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from tests.api_support import (
    auth,
    client,
    dagster_server,  # noqa: F401  (fixture)
    start_daemon,
    wait_for,
)
from tests.conftest import fast_study_config
from tests.test_ingest_drops import ingest_only
from trialsynth.artifacts import read_evidence
from trialsynth.demo.generator import generate_study
from trialsynth.runner import process_landing_zone
from trialsynth.security import KeyService
from trialsynth.settings import get_settings

pytestmark = pytest.mark.slow
STUDY = "ACME-001"
STUDY_YAML = """
seed: 3
imputation: {candidates: [mean, knn], repeats: 1, rate: 0.2}
synthesis: {synthesizer: copula, n: 80, allow_unapproved: false}
evidence: {target: SEX}
"""
RUN_TIMEOUT_S = 900  # a run process imports torch, dbt and every asset module: minutes on a busy 2-core machine


def finished(c, headers, job_id: str) -> dict:
    def done():
        job = c.get(f"/jobs/{job_id}", headers=headers).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None
    return wait_for(done, RUN_TIMEOUT_S, f"job {job_id}", interval=3)


@pytest.fixture(scope="module")
def study(dagster_server):  # noqa: F811
    """The demo study uploaded through the API and ingested (raw zone + bronze) before the daemon starts."""
    settings = dagster_server.settings()
    fast_study_config(dagster_server.root / "studies", STUDY, STUDY_YAML)
    tables = generate_study("acme", STUDY, n_subjects=160, n_sites=4, seed=5)
    files = []
    for name, frame in tables.items():
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        files.append(("files", (f"{name}.csv", buffer.getvalue().encode(), "text/csv")))
    with client(settings) as c:
        r = c.post("/ingest/v1/drops", data={"study": STUDY, "drop_id": "d001"}, files=files,
                   headers=auth(settings) | {"Idempotency-Key": "e2e-drop"})
        assert r.status_code == 201, r.text
    mp = pytest.MonkeyPatch()
    for key, value in dagster_server.env.items():
        if key.startswith(("TRIALSYNTH_", "DAGSTER_HOME")):
            mp.setenv(key, value)
    get_settings.cache_clear()
    (outcome,) = process_landing_zone(log=lambda _m: None, tenant="acme", study=STUDY, assets=ingest_only())
    assert outcome.status == "SUCCESS", outcome.summary
    mp.undo()
    get_settings.cache_clear()
    start_daemon(dagster_server)
    return settings


def test_train_approve_generate_evidence_through_the_api(study):
    settings = study
    headers = auth(settings)
    with client(settings) as c:
        r = c.post("/synth/v1/train", json={"study": STUDY, "synthesizer": "copula", "seed": 3},
                   headers=headers | {"Idempotency-Key": "e2e-train"})
        assert r.status_code == 202, r.text
        trained = finished(c, headers, r.json()["job_id"])
        assert trained["status"] == "succeeded", trained["result"]
        model_id = trained["result"]["model_id"]
        assert trained["result"]["model_status"] == "draft" and trained["links"]["model"] == f"/synth/v1/models/{model_id}"

        body = {"model_id": model_id, "n": 60, "conditions": {"ARM": "Placebo"}, "seed": 9}
        refused = c.post("/synth/v1/generate", json=body, headers=headers | {"Idempotency-Key": "e2e-gen-draft"})
        assert refused.status_code == 409 and refused.json()["errors"][0]["field"] == "body.model_id"
        approver = auth(settings, subject="qa-statistician", scopes=("synth:approve",))
        approved = c.post(f"/synth/v1/models/{model_id}/approve", json={"why": "fidelity reviewed"},
                          headers=approver | {"Idempotency-Key": "e2e-approve"})
        assert approved.status_code == 200 and approved.json()["status"] == "approved"

        r = c.post("/synth/v1/generate", json=body, headers=headers | {"Idempotency-Key": "e2e-gen"})
        assert r.status_code == 202, r.text
        generated = finished(c, headers, r.json()["job_id"])
        assert generated["status"] == "succeeded", generated["result"]
        result = generated["result"]
        batch = result["batch_id"]
        assert batch == generated["dagster_run_id"] and result["model_id"] == model_id and result["rows"] == 60
        cohort = pd.read_parquet(settings.lake_dir / result["cohort"].removeprefix("lake:"))
        assert len(cohort) == 60 and (cohort["ARM"] == "Placebo").all()  # the conditioning, exactly

        pack = c.get(result["links"]["evidence"], headers=headers)
        written = settings.study_dir("acme", STUDY) / "evidence" / batch / "evidence.json"
        assert pack.status_code == 200 and pack.content == read_evidence(written, keys=KeyService(settings))  # the pack that run wrote
        assert json.loads(pack.content)["run_id"] == batch
        html = c.get(result["links"]["report"], headers=headers)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert c.get(result["links"]["evidence"], headers=auth(settings, "globex")).status_code == 404


def test_impute_job_reports_missingness_the_imputed_dataset_and_its_lineage(study):
    settings = study
    headers = auth(settings)
    with client(settings) as c:
        body = {"study": STUDY, "mechanism": "MAR", "candidates": ["mean", "median"], "repeats": 1}
        r = c.post("/impute/v1/run", json=body, headers=headers | {"Idempotency-Key": "e2e-impute"})
        assert r.status_code == 202, r.text
        job = finished(c, headers, r.json()["job_id"])
    assert job["status"] == "succeeded", job["result"]
    result = job["result"]
    assert result["imputer"] in ("mean", "median") and "RMSE" in result["why"]
    imputed = pd.read_parquet(settings.lake_dir / result["imputed_dataset"].removeprefix("lake:"))
    assert imputed["VALUE"].notna().all() and imputed["IMPUTED"].any()
    assert 0 <= result["missingness"]["little_min_p_value"] <= 1
    lineage = result["lineage"]
    assert {m["asset_key"] for m in lineage["manifests"]} >= {"missingness_profile", "imputation_benchmark", "imputed_dataset"}
    assert lineage["raw_input"] is not None and lineage["verify"].startswith("trialsynth verify-lineage")
    choice = json.loads((settings.study_dir("acme", STUDY) / "imputation" / "choice.json").read_text())
    assert choice["mechanism"] == "MAR" and choice["repeats"] == 1  # the request's assumptions reached the run


DP_STUDY_YAML = STUDY_YAML.replace(
    "synthesis: {synthesizer: copula, n: 80, allow_unapproved: false}",
    "synthesis: {synthesizer: dp_copula, n: 80, privacy: {epsilon: 1.0, estimate_domain: true, cap: {epsilon: 1.5}}}")


def test_dp_training_through_the_api_spends_the_budget_and_the_cap_refuses_more(study, dagster_server):  # noqa: F811
    """Last in the module: it switches the study to a DP config (public domain estimated under the budget)."""
    settings = study
    headers = auth(settings)
    fast_study_config(dagster_server.root / "studies", STUDY, DP_STUDY_YAML)
    with client(settings) as c:
        r = c.post("/synth/v1/train", json={"study": STUDY, "privacy": {"epsilon": 1.0}, "seed": 3},
                   headers=headers | {"Idempotency-Key": "e2e-dp-train"})
        assert r.status_code == 202, r.text
        trained = finished(c, headers, r.json()["job_id"])
        assert trained["status"] == "succeeded", trained["result"]
        assert trained["result"]["privacy"] == "(epsilon=1, delta=1e-06)-DP"
        spend = c.app.state.ctx.registry.privacy_of(trained["result"]["model_id"])
        assert (spend.mechanism, spend.epsilon, spend.study) == ("dp_copula", 1.0, f"acme/{STUDY}")
        more = c.post("/synth/v1/train", json={"study": STUDY, "privacy": {"epsilon": 1.0}, "seed": 3,
                                               "synthesizer": "mst"},
                      headers=headers | {"Idempotency-Key": "e2e-dp-more"})
        assert more.status_code == 409, more.text
        assert more.json()["spent"]["epsilon"] == 1.0 and more.json()["remaining"]["epsilon"] == 0.5
