"""The study's subject x visit matrix is one materialized asset (``study_matrix``, Parquet in the study's
lake folder): built once per run from bronze, read back exactly by the missingness, imputation and
synthesis assets, none of which rebuilds it; a reader without it fails saying which asset to materialize."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

import assets.study_data as study_data
from orchestration.partitions import TENANT_STUDY
from orchestration.resources import LakeResource, LineageResource, RegistryResource
from tests.conftest import fast_study_config
from trialsynth.demo.generator import as_bronze_frame, generate_study
from trialsynth.settings import get_settings

PARTITION = "acme|ACME-001"


@pytest.fixture
def lake(settings, tmp_path, monkeypatch):
    """Bronze DM/VS/LB/SV of a small demo study (no ingest), an instance knowing its partition."""
    monkeypatch.setenv("TRIALSYNTH_STUDIES_DIR", str(fast_study_config(tmp_path / "studies", "ACME-001")))
    get_settings.cache_clear()
    tables = generate_study("acme", "ACME-001", n_subjects=90, n_sites=3, seed=11)
    bronze = get_settings().study_dir("acme", "ACME-001") / "bronze"
    bronze.mkdir(parents=True)
    for domain in study_data.BRONZE_DOMAINS:
        as_bronze_frame(tables[domain]).write_parquet(bronze / f"{domain}.parquet")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANT_STUDY, [PARTITION])
    return instance


def test_built_once_per_run_and_read_back_exactly_by_its_readers(lake, monkeypatch):
    from assets.missingness import missingness_profile
    from assets.synthesis import synthesizer_model

    builds = []
    build = study_data.build_study_data
    monkeypatch.setattr(study_data, "build_study_data", lambda *a: builds.append(1) or build(*a))
    resources = {"lake": LakeResource(), "lineage": LineageResource(), "registry": RegistryResource()}
    result = dg.materialize([study_data.study_matrix, missingness_profile, synthesizer_model], partition_key=PARTITION,
                            resources=resources, instance=lake)
    assert result.success and len(builds) == 1

    fresh = build(*(LakeResource().read_bronze(PARTITION, d) for d in study_data.BRONZE_DOMAINS))
    stored = study_data.load_study_data(LakeResource(), PARTITION)
    pd.testing.assert_frame_equal(stored.matrix, fresh.matrix)
    pd.testing.assert_frame_equal(stored.scheduled, fresh.scheduled)
    pd.testing.assert_frame_equal(stored.baseline, fresh.baseline)
    pd.testing.assert_frame_equal(stored.cells, fresh.cells)
    assert stored.dropped == fresh.dropped
    assert stored.screen_failures == fresh.screen_failures
    metadata = {e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
                for e in result.get_asset_materialization_events()}
    assert metadata["study_matrix"]["subject_visits"].value == len(fresh.matrix)
    assert metadata["study_matrix"]["variables"].value == fresh.matrix.shape[1]
    # one "% missing" (of the expected cells, as dbt's mart_missingness counts them) on both pages
    scheduled = fresh.cells[fresh.cells["SCHEDULED"]]
    for page in ("study_matrix", "missingness_profile"):
        assert metadata[page]["scheduled_cells"].value == len(scheduled)
        assert metadata[page]["pct_missing_scheduled"].value == 100 * (~scheduled["OBSERVED"]).sum() / len(scheduled)
        assert metadata[page]["screen_failures_excluded"].value == len(fresh.screen_failures) > 0


def test_a_reader_without_the_matrix_names_the_asset_to_materialize(lake):
    with pytest.raises(dg.Failure, match="materialize the asset study_matrix of this partition first"):
        study_data.load_study_data(LakeResource(), PARTITION)
