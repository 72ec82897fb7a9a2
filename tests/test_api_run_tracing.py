"""The trace id of an API request reaches the logs of the asset ops of the Dagster run it launches: the
API puts it in the run tags and selects the trace logger; the run (executed here in process, with the
exact run config and tags the API submitted) logs JSON lines carrying that trace id and the tenant."""

from __future__ import annotations

import json
import uuid

from tests.api_support import auth, client, local_settings
from trialsynth.api.dagster import RunInfo

POWER = {"endpoint": "continuous", "effect": 0.5, "simulations": 20, "curve_points": 2, "seed": 4}


class RecordingDagster:
    """Stands in for Dagster: records each launch (job, run config, tags); runs stay QUEUED."""

    def __init__(self) -> None:
        self.launched: list[tuple[str, dict, dict]] = []

    def add_partition(self, *_args) -> None:
        pass

    def submit(self, job_name: str, run_config: dict, tags: dict, api_job: str) -> str:
        self.launched.append((job_name, run_config, tags))
        return f"run-{api_job}"

    def runs(self, *, run_ids: list[str] | None = None, tags: dict | None = None) -> list[RunInfo]:
        return [RunInfo(run_id, "QUEUED") for run_id in run_ids or []]


def test_the_runs_op_logs_carry_the_requests_trace_id_and_tenant(tmp_path, capfd):
    dagster = RecordingDagster()
    trace_id = uuid.uuid4().hex
    with client(local_settings(tmp_path), dagster=dagster) as c:
        r = c.post("/simulate/v1/power", json=POWER, headers=auth(c.app.state.ctx.settings, "acme")
                   | {"Idempotency-Key": "traced", "traceparent": f"00-{trace_id}-{'cd' * 8}-01"})
    assert r.status_code == 202, r.text
    (job_name, run_config, tags), = dagster.launched
    assert tags["trialsynth/trace_id"] == trace_id == r.json()["trace_id"]
    assert run_config["loggers"] == {"trialsynth_trace": {}}

    from orchestration.definitions import defs

    capfd.readouterr()
    result = defs.resolve_job_def(job_name).execute_in_process(run_config=run_config, tags=tags)
    assert result.success
    err = capfd.readouterr().err
    assert "Logging error" not in err  # every record (Dagster's events included) formats as JSON
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    op_lines = [line for line in lines if line["step_key"] == "simulate_power_curves"]
    assert any(line["message"].startswith("simulating 20 trials per point") for line in op_lines)
    assert {line["event"] for line in op_lines} >= {"STEP_START", "STEP_OUTPUT", "STEP_SUCCESS"}
    assert {line["trace_id"] for line in lines} == {trace_id}  # every record of the run, ops included
    assert {line["tenant_id"] for line in lines} == {"acme"} and {line["run_id"] for line in lines} == {result.run_id}


def test_runs_that_do_not_select_the_trace_logger_keep_dagsters_console(capfd):
    from orchestration.definitions import defs

    config = {"ops": {"simulate_power_curves": {"config": {"request": POWER}}}}
    result = defs.resolve_job_def("api_power_simulation").execute_in_process(run_config=config)
    assert result.success
    err = capfd.readouterr().err
    assert "simulating 20 trials per point" in err and '"trace_id"' not in err
