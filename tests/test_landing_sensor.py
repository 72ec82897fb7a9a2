"""The landing sensor and the landing scan: only complete, safe drops; partitions registered; one drop
of a study at a time in arrival order, keyed by content; folders not taken are reported with the reason;
tenant names that normalise to another tenant's are refused; DAGSTER_HOME from the environment wins."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from orchestration.definitions import defs
from orchestration.partitions import TENANT_STUDY
from orchestration.resources import LakeResource
from orchestration.sensors import landing_sensor
from tests.conftest import make_drop
from trialsynth.dagster_home import HEADER, dagster_home_choice, ensure_dagster_home
from trialsynth.ingest.drops import DropRegistry
from trialsynth.ingest.landing import UnsafeDropError, open_drop, scan_ready_drops
from trialsynth.names import identity_clashes, tenant_identity, validate_name

FILES = {"dm.csv": b"STUDYID,USUBJID,SITEID\nS1,S1-001,701\n"}


def evaluate(instance):
    context = dg.build_sensor_context(instance=instance, resources={"lake": LakeResource()})
    return landing_sensor(context)


def stamp(path, seconds):
    """Give a drop's marker a known time, so arrival order does not depend on file system timing."""
    os.utime(path / "_READY", ns=(seconds * 10**9, seconds * 10**9))
    return path


def test_sensor_requests_one_drop_per_study_in_arrival_order_keyed_by_content(settings):
    landing = settings.landing_dir
    stamp(make_drop(landing, "acme", "ACME-001", "d2", {"dm.csv": FILES["dm.csv"] + b"S1,S1-002,702\n"}), 300)
    stamp(make_drop(landing, "acme", "ACME-001", "d1", FILES), 100)
    stamp(make_drop(landing, "acme", "ACME-001", "d1-redelivered", FILES), 200)  # same bytes, new drop id
    make_drop(landing, "acme", "ACME-001", "half", FILES, ready=False)
    make_drop(landing, "bad tenant", "S1", "d1", FILES)
    with dg.instance_for_test() as instance:
        result = evaluate(instance)
        (request,) = result.run_requests  # d1 arrived first; the others wait for its run
        assert request.tags["trialsynth/drop_id"] == "d1" and request.partition_key == "acme|ACME-001"
        assert request.run_config == {"ops": {"raw_drop": {"config": {"drop_id": "d1"}}}}
        assert request.tags["trialsynth/tenant"] == "acme" and request.tags["trialsynth/study"] == "ACME-001"
        (added,) = result.dynamic_partitions_requests
        assert added.partitions_def_name == TENANT_STUDY and list(added.partition_keys) == ["acme|ACME-001"]
        registry = DropRegistry(settings.lake_dir, "acme", "ACME-001")
        assert [(r.arrival, r.drop_id, r.state) for r in registry.records()] == [
            (1, "d1", "pending"), (2, "d1-redelivered", "pending"), (3, "d2", "pending")]
        assert registry.records()[0].content_hash == registry.records()[1].content_hash != registry.records()[2].content_hash

        # the same request again (idempotent by run key) until a run exists; no partition requested twice
        instance.add_dynamic_partitions(TENANT_STUDY, ["acme|ACME-001"])
        again = evaluate(instance)
        assert [r.run_key for r in again.run_requests] == [request.run_key] and not again.dynamic_partitions_requests

        # while d1's run is in flight nothing else of the study is requested, and the skip reason says so
        instance.add_run(DagsterRun(job_name="study_pipeline", run_id="run-d1", status=DagsterRunStatus.STARTED,
                                    tags={"dagster/run_key": request.run_key}))
        busy = evaluate(instance)
        assert not busy.run_requests and "waiting for the run of d1" in busy.skip_reason.skip_message

        # d1's run fails: d1 is failed with the reason, its redelivery is a duplicate, d2 is next
        instance.report_run_failed(instance.get_run_by_id("run-d1"))
        after = evaluate(instance)
        assert [r.tags["trialsynth/drop_id"] for r in after.run_requests] == ["d2"]
        states = {r.drop_id: r for r in registry.records()}
        assert states["d1"].state == "failed" and "before the drop reached bronze" in states["d1"].reason
        assert states["d1"].run_id == "run-d1"
        assert states["d1-redelivered"].state == "duplicate" and "same bytes as drop d1" in states["d1-redelivered"].reason
        # ... and the UI shows it: an observation of raw_drop for the partition with every drop's state
        (observation,) = after.asset_events
        assert observation.asset_key == dg.AssetKey("raw_drop") and observation.partition == "acme|ACME-001"
        assert "d1: failed" in observation.description and "| d1-redelivered | duplicate |" in observation.metadata["drops"].value


def test_definitions_load_with_partitioned_assets_sensor_and_schedule():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_drop", "bronze/dm", "bronze/crf_pages", "dim_subject", "mart_missingness", "power_curves"} <= keys
    assert defs.resolve_sensor_def("landing_sensor").job_name == "study_pipeline"
    assert defs.resolve_schedule_def("nightly_marts_refresh").cron_schedule == "0 2 * * *"
    assert graph.get(dg.AssetKey("mart_missingness")).partitions_def.name == TENANT_STUDY


@pytest.mark.parametrize("other", ["ACME", "acme.", "Acme_", "acrne", "acme-"])
def test_tenant_folder_normalising_to_a_known_tenant_is_refused_with_message(tmp_path, other):
    make_drop(tmp_path, "acme", "S1", "d1", FILES)
    make_drop(tmp_path, other, "S1", "d1", FILES)
    drops, skipped = scan_ready_drops(tmp_path, known_tenants=["acme"])
    assert [d.tenant for d in drops] == ["acme"]
    (message,) = skipped
    assert f"tenant folder {other!r} refused: it normalises to 'acme' like 'acme'" in message
    with pytest.raises(UnsafeDropError, match="normalises to 'acme'"):
        open_drop(tmp_path, other, "S1", "d1", known_tenants=["acme"])


def test_clashing_tenants_without_data_are_both_refused_and_hidden_folders_are_reported(tmp_path):
    for tenant in ("t1", "T1", "beta"):
        make_drop(tmp_path, tenant, "S1", "d1", FILES)
    make_drop(tmp_path, "..etc", "S1", "d1", FILES)
    make_drop(tmp_path, ".staging", "S1", "d1", FILES)  # the demo generator's staging folder: silent
    make_drop(tmp_path, "beta", ".S2", "d1", FILES)
    make_drop(tmp_path, "beta", "S1", ".upload-in-progress", FILES)  # a drop being uploaded: silent
    drops, skipped = scan_ready_drops(tmp_path)
    assert [(d.tenant, d.study, d.drop_id) for d in drops] == [("beta", "S1", "d1")]
    text = "\n".join(skipped)
    assert len(skipped) == 4, text
    assert "'..etc': skipped: a folder whose name starts with '.' is hidden and never a tenant" in text.replace("/..etc", "'..etc'")
    assert "never a study" in text and "none of them has data yet" in text
    assert "tenant folder 'T1' refused" in text and "tenant folder 't1' refused" in text


def test_tenant_identity_rules():
    same = ["acme", "ACME", "acme.", "Acme_", "ａｃｍｅ", "acrne"]
    assert {tenant_identity(n) for n in same} == {"acme"}
    assert tenant_identity("acmeI") == tenant_identity("acmel") == tenant_identity("acme1") != tenant_identity("acmei")
    assert tenant_identity("t1") != tenant_identity("t2") and tenant_identity("acme-bio") != tenant_identity("acme")
    assert identity_clashes(["acme", "t2"], ["acme"]) == {}
    with pytest.raises(ValueError, match=r"U\+0430 CYRILLIC SMALL LETTER A, at position 0 is not ASCII"):
        validate_name("\u0430cme", "tenant")


def test_dagster_home_from_the_environment_wins_and_is_said(settings, tmp_path, monkeypatch, caplog):
    chosen = tmp_path / "env_home"
    monkeypatch.setenv("DAGSTER_HOME", str(chosen))
    choice = dagster_home_choice(settings)
    assert (choice.path, choice.source) == (chosen, "DAGSTER_HOME")
    assert choice.ignored == f"settings.dagster_home={settings.dagster_home_path}"  # set by TRIALSYNTH_DAGSTER_HOME
    assert ensure_dagster_home(settings) == chosen and os.environ["DAGSTER_HOME"] == str(chosen)
    assert "DAGSTER_HOME=" in caplog.text and "is ignored" in caplog.text
    assert (chosen / "dagster.yaml").read_text().startswith(HEADER)
    # a dagster.yaml the user wrote is kept, with a warning
    own = tmp_path / "own_home"
    own.mkdir()
    (own / "dagster.yaml").write_text("telemetry: {enabled: true}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(own))
    ensure_dagster_home(settings)
    assert (own / "dagster.yaml").read_text() == "telemetry: {enabled: true}\n" and "keeping" in caplog.text
    # without DAGSTER_HOME the settings decide; the value exported then is not taken for a user's choice
    monkeypatch.delenv("DAGSTER_HOME")
    assert ensure_dagster_home(settings) == settings.dagster_home_path
    other = settings.model_copy(update={"dagster_home": tmp_path / "second"})
    assert dagster_home_choice(other).path == tmp_path / "second"
