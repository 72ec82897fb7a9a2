"""The landing sensor: only complete drops, partitions registered, run key = content hash."""

from __future__ import annotations

import dagster as dg

from orchestration.definitions import defs
from orchestration.partitions import TENANT_STUDY
from orchestration.resources import LakeResource
from orchestration.sensors import landing_sensor
from tests.conftest import make_drop

FILES = {"dm.csv": b"STUDYID,USUBJID,SITEID\nS1,S1-001,701\n"}


def evaluate(instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lake": LakeResource()})
    return landing_sensor(context)


def test_sensor_requests_one_run_per_complete_drop_keyed_by_content(settings):
    landing = settings.landing_dir
    make_drop(landing, "acme", "ACME-001", "d1", FILES)
    make_drop(landing, "acme", "ACME-001", "d1-redelivered", FILES)  # same bytes, new drop id
    make_drop(landing, "acme", "ACME-001", "d2", {"dm.csv": FILES["dm.csv"] + b"S1,S1-002,702\n"})
    make_drop(landing, "acme", "ACME-001", "half", FILES, ready=False)
    make_drop(landing, "bad tenant", "S1", "d1", FILES)
    with dg.instance_for_test() as instance:
        result = evaluate(instance)
        requests = {r.tags["trialsynth/drop_id"]: r for r in result.run_requests}
        assert set(requests) == {"d1", "d1-redelivered", "d2"}  # "half" has no _READY; "bad tenant" unsafe
        assert requests["d1"].run_key == requests["d1-redelivered"].run_key != requests["d2"].run_key
        assert requests["d1"].partition_key == "acme|ACME-001"
        assert requests["d1"].run_config == {"ops": {"raw_drop": {"config": {"drop_id": "d1"}}}}
        (added,) = result.dynamic_partitions_requests
        assert added.partitions_def_name == TENANT_STUDY and list(added.partition_keys) == ["acme|ACME-001"]
        # once the partition exists it is not requested again; the cursor caches content hashes
        instance.add_dynamic_partitions(TENANT_STUDY, ["acme|ACME-001"])
        again = evaluate(instance, cursor=result.cursor)
        assert not again.dynamic_partitions_requests
        assert {r.run_key for r in again.run_requests} == {r.run_key for r in result.run_requests}


def test_definitions_load_with_partitioned_assets_sensor_and_schedule():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_drop", "bronze/dm", "bronze/crf_pages", "dim_subject", "mart_missingness", "power_curves"} <= keys
    assert defs.resolve_sensor_def("landing_sensor").job_name == "study_pipeline"
    assert defs.resolve_schedule_def("nightly_marts_refresh").cron_schedule == "0 2 * * *"
    assert graph.get(dg.AssetKey("mart_missingness")).partitions_def.name == TENANT_STUDY
