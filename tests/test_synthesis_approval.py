"""Synthesis assets on a prepared lake (no ingest, no dbt): a draft model waits for approval without
failing the run, the same data and config reuse the registered model, approval lets it generate, and a
differentially private study spends its budget once and is refused past its cap."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from orchestration.partitions import TENANT_STUDY
from orchestration.resources import LakeResource, LineageResource, RegistryResource
from tests.conftest import fast_study_config
from trialsynth.demo.generator import as_bronze_frame, generate_study
from trialsynth.registry import ModelRegistry, PrivacySpend
from trialsynth.settings import get_settings

PARTITION = "acme|ACME-001"
DRAFT_YAML = """
seed: 3
synthesis: {synthesizer: copula, n: 60, conditions: {ARM: Placebo}, allow_unapproved: false}
"""
DP_YAML = """
seed: 3
synthesis:
  synthesizer: mst
  n: 60
  conditions: {ARM: Placebo, SEX: F}
  allow_unapproved: true
  privacy: {epsilon: 1.0, delta: 1.0e-6, cap: {epsilon: 1.5, delta: 1.0e-5}, estimate_domain: true}
  columns:
    ARM: {categories: [Placebo, Xanomab 50 mg]}
    SEX: {categories: [F, M]}
    AGE: {kind: integer, min_value: 18, max_value: 90}
"""


@pytest.fixture
def lake(settings, tmp_path, monkeypatch):
    """A lake with the demo study's bronze DM/VS/LB/SV (120 subjects) and an instance knowing its partition."""
    tables = generate_study("acme", "ACME-001", n_subjects=120, n_sites=3, seed=5)
    bronze = settings.study_dir("acme", "ACME-001") / "bronze"
    bronze.mkdir(parents=True)
    for domain in ("dm", "vs", "lb", "sv"):
        as_bronze_frame(tables[domain]).write_parquet(bronze / f"{domain}.parquet")
    from assets.study_data import BRONZE_DOMAINS, build_study_data, write_study_data

    # what the study_matrix asset writes, and synthesizer_model reads
    write_study_data(LakeResource(), PARTITION, build_study_data(*(LakeResource().read_bronze(PARTITION, d)
                                                                   for d in BRONZE_DOMAINS)))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANT_STUDY, [PARTITION])

    def configure(text: str) -> None:
        monkeypatch.setenv("TRIALSYNTH_STUDIES_DIR", str(fast_study_config(tmp_path / "studies", "ACME-001", text)))
        get_settings.cache_clear()

    return settings, instance, configure


def _materialize(instance: dg.DagsterInstance, *assets: dg.AssetsDefinition) -> dg.ExecuteInProcessResult:
    resources = {"lake": LakeResource(), "lineage": LineageResource(), "registry": RegistryResource()}
    return dg.materialize(list(assets), partition_key=PARTITION, resources=resources, instance=instance,
                          raise_on_error=False)


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)]
    return {k: getattr(v, "value", v) for k, v in event.step_materialization_data.materialization.metadata.items()}


def _failure(result: dg.ExecuteInProcessResult) -> str:
    (event,) = result.get_step_failure_events()
    return event.step_failure_data.error.message


def test_a_draft_waits_is_reused_and_generates_once_approved(lake) -> None:
    from assets.synthesis import WAITING_MARKER, approved_while_waiting, synthesizer_model, synthetic_cohort

    settings, instance, configure = lake
    configure(DRAFT_YAML)
    registry, study_dir = ModelRegistry(), settings.study_dir("acme", "ACME-001")
    first = _materialize(instance, synthesizer_model, synthetic_cohort)
    assert first.success  # waiting is not a failure
    (model,) = registry.list(kind="synthesizer")
    (check,) = first.get_asset_check_evaluations()
    assert (check.check_name, check.passed, check.severity) == ("model_approved", False, dg.AssetCheckSeverity.WARN)
    assert check.description.startswith(f"waiting for approval of model {model.id}: approve with "
                                        f"`trialsynth registry approve {model.id} --by NAME --why REASON`")
    assert not (study_dir / "synthesis" / "synthetic_cohort.parquet").exists()
    assert json.loads((study_dir / WAITING_MARKER).read_text())["model_id"] == model.id
    assert approved_while_waiting(LakeResource(), registry) == {}  # still a draft

    second = _materialize(instance, synthesizer_model, synthetic_cohort)
    assert second.success and _metadata(second, "synthesizer_model")["training"] == f"reused model {model.id}"
    assert [m.id for m in registry.list(kind="synthesizer")] == [model.id]

    registry.approve(model.id, by="qa", why="evidence reviewed")
    assert approved_while_waiting(LakeResource(), registry) == {PARTITION: model.id}
    third = _materialize(instance, synthetic_cohort)
    assert third.success and third.get_asset_check_evaluations()[0].passed
    cohort = pd.read_parquet(study_dir / "synthesis" / "synthetic_cohort.parquet")
    assert len(cohort) == 60 and (cohort["ARM"] == "Placebo").all()
    assert approved_while_waiting(LakeResource(), registry) == {} and not (study_dir / WAITING_MARKER).exists()

    registry.retire(model.id, by="qa", why="site 102 data withdrawn")
    refused = _materialize(instance, synthesizer_model)
    assert not refused.success
    assert f"model {model.id}" in _failure(refused) and "retired by qa (site 102 data withdrawn)" in _failure(refused)
    assert len(registry.list(kind="synthesizer")) == 1


def test_a_dp_study_spends_its_budget_once_and_is_refused_past_its_cap(lake) -> None:
    from assets.synthesis import synthesizer_model, synthetic_cohort

    settings, instance, configure = lake
    configure(DP_YAML)
    registry = ModelRegistry()
    first = _materialize(instance, synthesizer_model, synthetic_cohort)
    assert first.success, first.get_step_failure_events()
    (model,) = registry.list(kind="synthesizer")
    assert _metadata(first, "synthesizer_model")["privacy"] == "(epsilon=1, delta=1e-06)-DP"
    assert registry.privacy_of(model.id) == PrivacySpend(study="acme/ACME-001", mechanism="mst", epsilon=1.0, delta=1e-6)
    cohort = pd.read_parquet(settings.study_dir("acme", "ACME-001") / "synthesis" / "synthetic_cohort.parquet")
    assert len(cohort) == 60 and (cohort["ARM"] == "Placebo").all() and (cohort["SEX"] == "F").all()

    again = _materialize(instance, synthesizer_model)  # same data and config: reused, nothing spent
    assert _metadata(again, "synthesizer_model")["training"] == f"reused model {model.id}"
    version = registry.latest_data_version("acme/ACME-001")
    assert version != model.training_data_sha256  # the account is the study data, not this seed's split
    assert registry.privacy_spent("acme/ACME-001", version) == (1.0, 1e-6, 1)

    # A second training, 2 > cap 1.5: another synthesizer, or the same one with another seed (another
    # train/holdout split of the same subjects), spends from the same account.
    for other in (DP_YAML.replace("synthesizer: mst", "synthesizer: dp_copula"), DP_YAML.replace("seed: 3", "seed: 4")):
        configure(other)
        refused = _materialize(instance, synthesizer_model)
        assert not refused.success
        message = _failure(refused)
        assert "would exceed the study's privacy cap (epsilon=1.5, delta=1e-05)" in message
        assert "spent epsilon=1, delta=1e-06 by 1 model(s); remaining epsilon=0.5" in message
        assert len(registry.list(kind="synthesizer")) == 1
