"""The approval sensor (the Dagster daemon's half of the approval flow): a study whose cohort waits for
its model gets one generation run of its partition once the registry records the model approved, pinned
to that model; while the model is a draft (or if it was retired) the skip reason names it."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration.partitions import TENANT_STUDY
from orchestration.resources import LakeResource, RegistryResource
from orchestration.sensors import APPROVED_MODEL_TAG, approval_sensor
from trialsynth.registry import ModelRegistry

WAITING = "acme|ACME-001"
OTHER = "acme|ACME-002"


@pytest.fixture
def flow(settings):
    """Two studies of tenant acme whose cohorts wait for their draft models (the marker the
    synthetic_cohort asset writes), and an instance that knows both partitions."""
    from assets.synthesis import WAITING_MARKER

    registry = ModelRegistry()
    models = {}
    for partition in (WAITING, OTHER):
        artifact = settings.study_dir(*partition.split("|")) / "synthesis" / "models" / "r1.pkl"
        artifact.parent.mkdir(parents=True)
        artifact.write_bytes(partition.encode())
        models[partition] = registry.register(
            kind="synthesizer", name=f"{partition.replace('|', '/')}/copula", trained_by="dagster run r1",
            training_data_sha256="a" * 64, artifact_path=artifact, seed=7)
        LakeResource().write_json(partition, WAITING_MARKER, {"model_id": models[partition], "run_id": "r1"})
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANT_STUDY, [WAITING, OTHER])
    return registry, models, instance


def evaluate(instance: dg.DagsterInstance) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, resources={"lake": LakeResource(),
                                                                    "registry": RegistryResource()})
    return approval_sensor(context)


def test_drafts_are_skipped_naming_each_waiting_model(flow) -> None:
    _registry, models, instance = flow
    result = evaluate(instance)
    assert not result.run_requests
    message = result.skip_reason.skip_message
    for partition, model_id in models.items():
        assert f"{partition}: waiting for approval of model {model_id}" in message
    assert f"trialsynth registry approve {models[WAITING]} --by NAME --why REASON" in message


def test_an_approved_model_gets_one_generation_run_of_its_partition_only(flow) -> None:
    registry, models, instance = flow
    registry.approve(models[WAITING], by="qa", why="evidence pack reviewed")
    (request,) = evaluate(instance).run_requests
    assert request.partition_key == WAITING
    assert request.tags[APPROVED_MODEL_TAG] == models[WAITING]
    assert request.run_config == {"ops": {asset: {"config": {"model_id": models[WAITING]}}
                                          for asset in ("synthetic_cohort", "evidence_pack")}}
    again = evaluate(instance).run_requests[0]
    assert again.run_key == request.run_key  # the daemon launches one run per (study, approved model)

    from orchestration.definitions import defs

    job = defs.resolve_job_def("approved_generation")
    assert dg.validate_run_config(job, request.run_config)  # the config fits the job's assets
    assert {key.to_user_string() for key in job.asset_layer.selected_asset_keys} >= {"synthetic_cohort", "evidence_pack"}


def test_a_retired_model_is_named_and_never_generates(flow) -> None:
    registry, models, instance = flow
    registry.retire(models[OTHER], by="qa", why="site withdrawn")
    result = evaluate(instance)
    assert not result.run_requests
    assert f"{OTHER}: waits for model {models[OTHER]}, which is retired" in result.skip_reason.skip_message


def test_nothing_waiting_says_so(settings) -> None:
    assert evaluate(dg.DagsterInstance.ephemeral()).skip_reason.skip_message == "no study waits for a model approval"
