"""What the Dagster UI shows must be right and readable (issue 14, "Dagster pages"), checked without
running the pipeline (tests/test_dagster_pages_demo.py runs it, slow):

- every asset check of a tenant/study asset (Python checks and dbt tests alike) carries the partition;
- after an upstream change outside a pipeline run (a backfill), the marts built from it, and only
  those, are requested for that study by the automation sensor, which is on by default (as is the
  nightly refresh); a whole pipeline run requests nothing more;
- every asset says what it does; the study matrix is built once and read by the analytics assets;
- the evidence report opens over HTTP from the asset's link (the API's signed-link route), and that
  link opens nothing else;
- a quiet run (``make demo``) prints one line per step, and its whole log, whatever the steps print
  to stdout (dbt's event stream), goes to its log file;
- a missing number in a Markdown metadata table is a blank cell, never "nan".
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import dagster as dg
import pytest

from orchestration.partitions import TENANT_STUDY
from tests.api_support import client, local_settings
from trialsynth.api.report_links import LINK_SECRET_ENV, report_link
from trialsynth.markdown import md_table
from trialsynth.runner import _run_in_process

PARTITION = "acme|ACME-001"


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from orchestration.definitions import defs

    return defs


def test_every_check_of_a_study_asset_carries_the_partition(defs):
    graph = defs.resolve_asset_graph()
    checks = list(graph.asset_check_keys)
    assert {c.name for c in checks} >= {"evidence_passes", "model_approved", "no_rows_quarantined"}
    assert any(graph.get(c.asset_key).group_name == "dbt" for c in checks)  # dbt tests are checks too
    for key in checks:
        asset = graph.get(key.asset_key)
        if asset.partitions_def is not None:
            spec = graph.get_check_spec(key)
            assert spec.partitions_def == asset.partitions_def, f"{key.to_user_string()} is not tied to its partition"


def test_marts_refresh_after_an_upstream_change_and_the_refresh_is_on_by_default(defs):
    graph = defs.resolve_asset_graph()
    dbt_models = [k for k in graph.materializable_asset_keys if graph.get(k).group_name == "dbt"]
    assert dbt_models and all(graph.get(k).automation_condition is not None for k in dbt_models)
    sensor = defs.resolve_sensor_def("marts_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_schedule_def("nightly_marts_refresh").default_status == dg.DefaultScheduleStatus.RUNNING

    instance = dg.DagsterInstance.ephemeral()
    other = "acme|ACME-002"
    instance.add_dynamic_partitions(TENANT_STUDY, [PARTITION, other])
    tick = dg.evaluate_automation_conditions(defs, instance)
    for key in graph.toposorted_asset_keys:  # a whole pipeline run of both studies, in dependency order
        if key in graph.materializable_asset_keys:
            for partition in (PARTITION, other):
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))
    tick = dg.evaluate_automation_conditions(defs, instance, cursor=tick.cursor)
    assert tick.total_requested == 0  # the run built its marts itself

    # imputed_dataset re-materialized for one study (a backfill, the API): its mart, for that study only
    instance.report_runless_asset_event(dg.AssetMaterialization("imputed_dataset", partition=PARTITION))
    tick = dg.evaluate_automation_conditions(defs, instance, cursor=tick.cursor)
    requested = {k: tick.get_requested_partitions(k) for k in dbt_models if tick.get_requested_partitions(k)}
    downstream = {k for k in graph.get(dg.AssetKey("imputed_dataset")).child_keys if k in dbt_models}
    assert downstream and requested == {k: {PARTITION} for k in downstream}
    tick = dg.evaluate_automation_conditions(defs, instance, cursor=tick.cursor)
    assert tick.total_requested == 0  # requested once, not on every tick


def test_assets_say_what_they_do_and_read_the_one_study_matrix(defs):
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.description and node.group_name, f"{key.to_user_string()} has no description or group"
    matrix = dg.AssetKey("study_matrix")
    assert {dg.AssetKey(["bronze", d]) for d in ("dm", "vs", "lb", "sv")} <= graph.get(matrix).parent_keys
    for reader in ("missingness_profile", "imputation_benchmark", "imputed_dataset", "synthesizer_model"):
        assert matrix in graph.get(dg.AssetKey(reader)).parent_keys, reader


def test_the_evidence_report_opens_over_http_from_its_link_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.delenv(LINK_SECRET_ENV, raising=False)
    settings = local_settings(tmp_path)
    run_id = "0b7c9c2e-3a5f-4d1e-9a51-6f0d2c8e4b11"
    report = settings.lake_dir / "acme" / "ACME-001" / "evidence" / run_id / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html><body>evidence</body></html>")
    link = report_link(settings, "acme", "ACME-001", run_id)
    assert link.startswith(f"{settings.api.public_url}/evidence/v1/reports/acme/ACME-001/{run_id}?sig=")
    api = client(settings, check_tenant_keys=False)
    path = link.removeprefix(settings.api.public_url)
    response = api.get(path)  # no bearer token: the link's signature is the authorization
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.text == report.read_text()
    other = settings.lake_dir / "acme" / "ACME-002" / "evidence" / run_id / "report.html"
    other.parent.mkdir(parents=True)
    other.write_text("<html>another study</html>")
    sig = path.split("sig=")[1]
    for wrong in (path.replace("ACME-001", "ACME-002"), path[:-1] + ("0" if sig[-1] != "0" else "1"),
                  path.replace(run_id, run_id.replace("0b7c", "1b7c"))):
        assert api.get(wrong).status_code == 404, wrong
    monkeypatch.setenv(LINK_SECRET_ENV, "x" * 32)  # another key (a deployment's Secret): old links stop working
    assert api.get(path).status_code == 404


def test_a_quiet_run_prints_one_line_per_step_and_logs_everything_to_its_file(tmp_path, capsys):
    @dg.asset
    def first(context) -> None:  # (no annotation: this module postpones annotations, Dagster reads them)
        sys.stdout.write("1 of 2 START sql table model main.first ... [RUN]\n")  # as dagster-dbt does
        context.log.info("a log line of the first step")

    @dg.asset(deps=[first])
    def second() -> None:
        print("2 of 2 OK created sql table model main.second")

    job = dg.Definitions(assets=[first, second], jobs=[dg.define_asset_job("both")]).resolve_job_def("both")
    lines: list[str] = []
    result, log_path = _run_in_process(job, dg.DagsterInstance.ephemeral(), lines.append, tmp_path / "logs")
    assert result.success and log_path.endswith(f"{result.run_id}.log")
    assert [line.split()[:2] for line in lines] == [["done", "first"], ["done", "second"]]
    assert all(line.rstrip().endswith(" s") for line in lines)  # each with its step's seconds
    text = Path(log_path).read_text(encoding="utf-8")
    assert "START sql table model main.first" in text and "OK created sql table model main.second" in text
    assert "a log line of the first step" in text and "STEP_SUCCESS" in text
    assert capsys.readouterr().out == ""  # nothing of the steps' output reached the terminal


def test_a_missing_number_is_a_blank_cell_in_markdown_metadata():
    table = md_table([{"metric": "auc", "value": math.nan, "threshold": 0.9}])
    assert "nan" not in table.lower() and "| auc |  | 0.9 |" in table
