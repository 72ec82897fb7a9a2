"""The demo study through the real pipeline (ingest and every dbt step), then the lineage checks on
what it recorded: every output re-hashes, bronze files and mart rows changed afterwards are named.
Slow (the whole pipeline): run by `make bench` / `pytest -m slow`."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from tests.conftest import fast_study_config
from trialsynth.cli import main
from trialsynth.dagster_home import ensure_dagster_home
from trialsynth.demo.generator import generate_study, write_drop
from trialsynth.lineage import LocalLineageStore
from trialsynth.settings import get_settings


@pytest.mark.slow
def test_pipeline_lineage_verifies_and_catches_changed_bronze_and_marts(settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRIALSYNTH_STUDIES_DIR", str(fast_study_config(tmp_path / "studies", "ACME-001")))
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home_path))
    get_settings.cache_clear()
    write_drop(generate_study("acme", "ACME-001", n_subjects=120, n_sites=4, seed=5), settings.landing_dir, "acme", "ACME-001")
    from orchestration.definitions import defs
    from orchestration.partitions import TENANT_STUDY

    ensure_dagster_home(get_settings())
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(TENANT_STUDY, ["acme|ACME-001"])
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(dg.AssetSelection.groups("ingest", "dbt").resolve(defs.resolve_asset_graph())))
    assert job.execute_in_process(instance=instance, partition_key="acme|ACME-001").success
    records = LocalLineageStore(settings.lake_dir).read("acme", "ACME-001")
    marts = [r for r in records if r["asset_key"] == "dbt/mart_enrollment"]
    assert marts and marts[-1]["outputs"][0]["kind"] == "rows" and marts[-1]["output_sha256"]
    assert main(["verify-lineage", "--checkpoint"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "all intact" in out and "outputs re-hashed" in out

    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("update mart_enrollment set tenant_id = tenant_id || '' where true")  # same rows: no change
    assert main(["verify-lineage"]) == 0
    capsys.readouterr()
    with duckdb.connect(str(settings.warehouse_path)) as con:
        (n,) = con.execute("select count(*) from mart_enrollment where tenant_id = 'acme'").fetchone()
        con.execute("delete from mart_enrollment where rowid = (select min(rowid) from mart_enrollment where tenant_id = 'acme')")
    assert n > 0 and main(["verify-lineage"]) == 1
    assert "asset 'dbt/mart_enrollment': output duckdb://" in capsys.readouterr().out
    bronze = settings.study_dir("acme", "ACME-001") / "bronze" / "dm.parquet"
    bronze.write_bytes(bronze.read_bytes() + b"\0")
    assert main(["verify-lineage"]) == 1
    assert "asset 'bronze/dm': output file:" in capsys.readouterr().out
