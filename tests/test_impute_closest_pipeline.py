"""Closest imputation and closest records through the study pipeline (slow: the whole pipeline runs).

A study that names no synthesizer, asks for KNN closest imputation and an automatic utility target:
the imputed dataset's donors and the synthetic cohort's closest real records land beside their
outputs, and the evidence says why the copula was used and which utility target was chosen.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from models.evidence.closest import CLOSEST_COLUMNS
from tests.conftest import fast_study_config
from trialsynth.artifacts import read_evidence
from trialsynth.demo.generator import generate_study, write_drop
from trialsynth.runner import process_landing_zone
from trialsynth.settings import get_settings

STUDY_YAML = """
seed: 3
imputation: {candidates: [mean, knn], repeats: 1, rate: 0.2, fill: knn, params: {knn: {n_neighbors: 3}}}
synthesis: {n: 60, allow_unapproved: true}
evidence: {target: auto, closest_k: 2}
"""


@pytest.mark.slow
def test_knn_donors_and_closest_records_are_written_beside_their_outputs(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIALSYNTH_STUDIES_DIR", str(fast_study_config(tmp_path / "studies", "ACME-001", STUDY_YAML)))
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home_path))
    get_settings.cache_clear()
    settings = get_settings()
    write_drop(generate_study("acme", "ACME-001", n_subjects=120, n_sites=3, seed=5), settings.landing_dir,
               "acme", "ACME-001")
    (outcome,) = process_landing_zone(log=lambda _m: None)
    assert outcome.status == "SUCCESS", outcome.summary
    lake = settings.study_dir("acme", "ACME-001")

    choice = json.loads((lake / "imputation" / "choice.json").read_text())
    assert choice["fill_imputer"] == "knn" and "closest imputation" in choice["fill_reason"] or \
        choice["imputer"] == "knn"
    imputed = pd.read_parquet(lake / "imputation" / "imputed_dataset.parquet")
    donors = pd.read_parquet(lake / "imputation" / "donors.parquet")
    assert {"USUBJID", "VISITNUM", "VISIT", "VARIABLE", "DONOR_USUBJID", "DONOR_VISITNUM", "DONOR_RANK",
            "DISTANCE", "DONOR_VALUE", "WEIGHT"} <= set(donors.columns)
    filled = imputed[imputed["IMPUTED"]]
    cells = donors.drop_duplicates(["USUBJID", "VISITNUM", "VARIABLE"])
    assert len(cells) == len(filled)  # every filled cell has its donors (or the pool-mean fallback)
    with_donors = donors[donors["METHOD"] == "donors"]
    assert with_donors.groupby(["USUBJID", "VISITNUM", "VARIABLE"])["DONOR_RANK"].max().eq(3).all()

    (pack_dir,) = [p for p in (lake / "evidence").iterdir() if (p / "evidence.json").exists()]
    closest = pd.read_parquet(pack_dir / "closest_records.parquet")
    cohort = pd.read_parquet(lake / "synthesis" / "synthetic_cohort.parquet")
    assert list(closest.columns) == ["tenant_id", "study_id", *CLOSEST_COLUMNS, "run_id"]  # for a dbt mart
    assert len(closest) == 2 * len(cohort) and (closest["run_id"] == pack_dir.name).all()
    evidence = json.loads(read_evidence(pack_dir / "evidence.json"))  # encrypted at rest
    assert any("Gaussian copula instead of the default ctgan" in n for n in evidence["details"]["notes"])
    assert evidence["details"]["utility_targets"]["reason"]
    assert "ARM" not in evidence["details"]["utility_targets"]["targets"]
