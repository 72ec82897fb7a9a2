"""API jobs against a real Dagster webserver (no daemon: launched runs stay QUEUED, so nothing runs):
what is launched, with which tags and config, how a retry finds its run, cross-tenant isolation,
Dagster down -> 503 and the retry that then succeeds, the circuit breaker and the run queue limits."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
import yaml

from tests.api_support import (
    UNREACHABLE,
    auth,
    client,
    dagster_server,  # noqa: F401  (fixture)
)
from trialsynth.api.dagster import API_JOB_TAG, CircuitBreaker, DagsterClient, DagsterUnavailable
from trialsynth.api.store import idempotency_table
from trialsynth.dagster_home import dagster_yaml
from trialsynth.settings import Settings

POWER = {"endpoint": "continuous", "effect": 0.5, "simulations": 50, "curve_points": 2, "seed": 4}
RUN_QUERY = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status jobName runConfigYaml
  tags { key value } } } }"""


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def run_of(server, run_id: str) -> dict:
    run = server.graphql(RUN_QUERY, {"id": run_id})["runOrError"]
    return run | {"tags": {t["key"]: t["value"] for t in run["tags"]}}


@pytest.fixture
def api(dagster_server):  # noqa: F811
    with client(dagster_server.settings()) as c:
        yield c


def test_simulation_job_is_a_queued_dagster_run_carrying_tenant_job_and_trace(api, dagster_server):  # noqa: F811
    t = tenant()
    trace_id = uuid.uuid4().hex
    headers = auth(api.app.state.ctx.settings, t) | {"Idempotency-Key": "sim-1",
                                                      "traceparent": f"00-{trace_id}-{'ab' * 8}-01"}
    r = api.post("/simulate/v1/power", json=POWER, headers=headers)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/jobs/{job['job_id']}" and job["status"] == "queued" and job["kind"] == "simulate"
    assert job["trace_id"] == trace_id == r.headers["x-trace-id"]
    run = run_of(dagster_server, job["dagster_run_id"])
    assert run["status"] == "QUEUED" and run["jobName"] == "api_power_simulation"
    assert run["tags"]["trialsynth/tenant"] == t and run["tags"][API_JOB_TAG] == job["job_id"]
    assert run["tags"]["trialsynth/trace_id"] == trace_id
    assert run["tags"]["trialsynth/traceparent"].startswith(f"00-{trace_id}-")
    assert "simulations: 50" in run["runConfigYaml"]
    again = api.get(f"/jobs/{job['job_id']}", headers=auth(api.app.state.ctx.settings, t))
    assert again.status_code == 200 and again.json()["dagster_run_id"] == job["dagster_run_id"]
    assert again.json()["status"] == "queued"


def test_train_runs_the_study_partition_with_the_request_as_run_config(api, dagster_server):  # noqa: F811
    t = tenant()
    settings = api.app.state.ctx.settings
    (settings.study_dir(t, "ST-1") / "bronze").mkdir(parents=True)
    body = {"study": "ST-1", "synthesizer": "copula", "seed": 11,
            "columns": {"AGE": {"kind": "integer", "min_value": 18, "max_value": 85},
                        "SEVERITY": {"kind": "ordinal", "categories": ["mild", "moderate", "severe"]}}}
    r = api.post("/synth/v1/train", json=body, headers=auth(settings, t) | {"Idempotency-Key": "train-1"})
    assert r.status_code == 202, r.text
    run = run_of(dagster_server, r.json()["dagster_run_id"])
    assert run["jobName"] == "api_synth_train"
    assert run["tags"]["dagster/partition"] == f"{t}|ST-1" and run["tags"]["trialsynth/study"] == "ST-1"
    assert "synthesizer: copula" in run["runConfigYaml"] and "- moderate" in run["runConfigYaml"]
    # a study the tenant has no data for is refused before anything is launched, naming the field
    r = api.post("/synth/v1/train", json=body | {"study": "NOPE-9"}, headers=auth(settings, t) | {"Idempotency-Key": "train-2"})
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "body.study"


def test_dp_train_runs_with_the_requests_privacy_budget_and_the_trace_logger(api, dagster_server):  # noqa: F811
    t = tenant()
    settings = api.app.state.ctx.settings
    (settings.study_dir(t, "ST-1") / "bronze").mkdir(parents=True)
    body = {"study": "ST-1", "synthesizer": "dp_copula", "privacy": {"epsilon": 0.5, "delta": 1e-7}, "seed": 3}
    r = api.post("/synth/v1/train", json=body, headers=auth(settings, t) | {"Idempotency-Key": "dp-1"})
    assert r.status_code == 202, r.text
    config = yaml.safe_load(run_of(dagster_server, r.json()["dagster_run_id"])["runConfigYaml"])
    assert config["ops"]["synthesizer_model"]["config"]["privacy"] == {"epsilon": 0.5, "delta": 1e-7}
    assert config["ops"]["synthesizer_model"]["config"]["synthesizer"] == "dp_copula"
    assert config["loggers"] == {"trialsynth_trace": {}}


def test_another_tenants_job_answers_404_like_an_unknown_id(api):
    settings = api.app.state.ctx.settings
    owner, other = tenant(), tenant()
    job = api.post("/simulate/v1/power", json=POWER, headers=auth(settings, owner) | {"Idempotency-Key": "k"}).json()
    theirs = api.get(f"/jobs/{job['job_id']}", headers=auth(settings, other))
    unknown = api.get(f"/jobs/{uuid.uuid4().hex}", headers=auth(settings, other))
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["title"] == unknown.json()["title"] and "for this tenant" in theirs.json()["detail"]
    # the same Idempotency-Key in another tenant is another request
    mine = api.post("/simulate/v1/power", json=POWER, headers=auth(settings, other) | {"Idempotency-Key": "k"})
    assert mine.status_code == 202 and mine.json()["job_id"] != job["job_id"]


def test_job_list_is_the_tenants_own_filtered_by_status(api):
    settings = api.app.state.ctx.settings
    a, b = tenant(), tenant()
    ids = {api.post("/simulate/v1/power", json=POWER | {"seed": i}, headers=auth(settings, a) | {"Idempotency-Key": f"a{i}"})
           .json()["job_id"] for i in range(2)}
    api.post("/simulate/v1/power", json=POWER, headers=auth(settings, b) | {"Idempotency-Key": "b"})
    listed = api.get("/jobs", headers=auth(settings, a)).json()["jobs"]
    assert {j["job_id"] for j in listed} == ids
    assert {j["job_id"] for j in api.get("/jobs?status=queued", headers=auth(settings, a)).json()["jobs"]} == ids
    assert api.get("/jobs?status=succeeded", headers=auth(settings, a)).json()["jobs"] == []
    bad = api.get("/jobs?status=done", headers=auth(settings, a))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.status"


def test_a_launch_retried_with_the_same_job_id_finds_its_run(dagster_server):  # noqa: F811
    dagster = DagsterClient(dagster_server.url)
    job_id = uuid.uuid4().hex
    config = {"ops": {"simulate_power_curves": {"config": {"request": POWER}}}}
    first = dagster.submit("api_power_simulation", config, {"trialsynth/tenant": "acme"}, job_id)
    second = dagster.submit("api_power_simulation", config, {"trialsynth/tenant": "acme"}, job_id)
    assert first == second and [r.run_id for r in dagster.runs(tags={API_JOB_TAG: job_id})] == [first]


def test_dagster_down_answers_503_and_the_retry_with_the_same_key_succeeds(dagster_server):  # noqa: F811
    t = tenant()
    down = dagster_server.settings(dagster_url=UNREACHABLE)
    headers = auth(down, t) | {"Idempotency-Key": "retry-me"}
    with client(down) as c:
        r = c.post("/simulate/v1/power", json=POWER, headers=headers)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"] == "application/problem+json" and "Idempotency-Key" in r.json()["detail"]
        with c.app.state.ctx.engine.connect() as conn:
            (row,) = conn.execute(idempotency_table.select().where(idempotency_table.c.tenant == t)).fetchall()
        assert row.state == "retryable"
    with client(dagster_server.settings()) as c:  # Dagster is back (and the API restarted)
        r = c.post("/simulate/v1/power", json=POWER, headers=headers)
        assert r.status_code == 202 and r.json()["job_id"] == row.resource_id
    with client(dagster_server.settings()) as c:  # and again after another restart: the same response
        replay = c.post("/simulate/v1/power", json=POWER, headers=headers)
        assert replay.status_code == 202 and replay.content == r.content
        assert replay.headers["idempotent-replayed"] == "true"
    runs = DagsterClient(dagster_server.url).runs(tags={API_JOB_TAG: row.resource_id})
    assert len(runs) == 1


def test_circuit_breaker_opens_after_repeated_failures_and_half_opens_after_cooldown():
    now = [0.0]
    breaker = CircuitBreaker(failures=3, cooldown_s=10, clock=lambda: now[0])
    client_ = DagsterClient(UNREACHABLE, timeout_s=0.5, retries=0, breaker=breaker)
    for _ in range(3):
        with pytest.raises(DagsterUnavailable, match="unreachable"):
            client_.ping()
    assert breaker.is_open
    with pytest.raises(DagsterUnavailable, match="not calling it") as exc:
        client_.ping()
    assert exc.value.retry_after == 10
    now[0] = 10.5  # cooldown over: one trial call goes out (and fails: open again)
    with pytest.raises(DagsterUnavailable, match="unreachable"):
        client_.ping()
    with pytest.raises(DagsterUnavailable, match="not calling it"):
        client_.ping()
    breaker.success()
    assert not breaker.is_open


def test_run_queue_allows_one_run_per_study_and_a_cap_per_tenant(tmp_path):
    home = tmp_path / "home"
    home.mkdir()


    (home / "dagster.yaml").write_text(yaml.safe_dump(dagster_yaml(Settings(runs_per_tenant=3))))
    instance = dg.DagsterInstance.from_config(str(home))
    limits = {rule["key"]: rule for rule in instance.get_concurrency_config().run_queue_config.tag_concurrency_limits}
    assert limits["dagster/partition"] == {"key": "dagster/partition", "limit": 1, "value": {"applyLimitPerUniqueValue": True}}
    assert limits["trialsynth/tenant"]["limit"] == 3 and limits["trialsynth/tenant"]["value"] == {"applyLimitPerUniqueValue": True}
    instance.dispose()
