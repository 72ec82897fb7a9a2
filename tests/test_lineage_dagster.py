"""The lineage_verification asset, its check and nightly schedule; Dagster run ids in manifests;
dbt mart outputs hashed as the partition's rows in canonical order and re-checked."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from assets.lineage import CHECK, lineage_verification
from orchestration.resources import LineageResource
from tests.lineage_support import fill, raw_write, verify
from trialsynth.lineage import FileSigner, LocalLineageStore, warehouse_dataset
from trialsynth.lineage.audit import STATUS_PATH
from trialsynth.lineage.rows import duckdb_partition_sha256


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == CHECK
    return evaluation


def test_verification_asset_check_fails_with_the_first_broken_link(settings, tmp_path, capsys):
    from trialsynth.cli import main

    store = LocalLineageStore(settings.lake_dir)
    records = fill(store, "acme", "S1", 3, tmp_path / "out")
    result = dg.materialize([lineage_verification], resources={"lineage": LineageResource()})
    assert result.success and _check(result).passed
    assert (settings.lake_dir / "acme" / "S1" / STATUS_PATH).is_file()
    assert (settings.lake_dir / "lineage" / "acme" / "S1" / "checkpoints" / f"{3:012d}.json").is_file()

    key = f"lineage/acme/S1/{1:012d}-{records[1]['hash']}.json"
    raw_write(store, key, store.backend.get(key).data.replace(b'"i":1', b'"i":7'))
    evaluation = _check(dg.materialize([lineage_verification], resources={"lineage": LineageResource()}))
    assert not evaluation.passed
    assert main(["verify-lineage"]) == 1
    cli_lines = capsys.readouterr().out.splitlines()
    assert evaluation.description.splitlines()[1:] == cli_lines[1:]  # same report, only the time differs
    assert cli_lines[1].startswith("first broken link: partition acme|S1, sequence 1, asset 'asset1'")


def test_manifests_carry_the_dagster_run_id(settings):
    @dg.asset
    def tiny(lineage: LineageResource) -> None:
        lineage.record("acme|S1", asset_key="tiny", output_sha256="00" * 32, code_version="t")

    result = dg.materialize([tiny], resources={"lineage": LineageResource()})
    (rec,) = LocalLineageStore(settings.lake_dir).read("acme", "S1")
    assert rec["run_id"] == result.run_id and rec["manifest"]["run"]["runId"] == result.run_id


def test_nightly_schedule_runs_only_the_verification():
    from assets.lineage import lineage_verification_job, nightly_lineage_verification
    from orchestration.jobs import study_pipeline_job
    from orchestration.partitions import tenant_study_partitions

    @dg.asset(partitions_def=tenant_study_partitions)
    def bronze_like() -> None: ...

    defs = dg.Definitions(assets=[lineage_verification, bronze_like], jobs=[study_pipeline_job, lineage_verification_job],
                          schedules=[nightly_lineage_verification], resources={"lineage": LineageResource()})
    dg.Definitions.validate_loadable(defs)  # e.g. a job named like an op would not load
    schedule = defs.resolve_schedule_def("nightly_lineage_verification")
    assert schedule.cron_schedule == "30 3 * * *" and schedule.job_name == "verify_lineage"
    assert defs.resolve_job_def("verify_lineage").asset_layer.selected_asset_keys == {dg.AssetKey("lineage_verification")}
    # the per-study pipeline (all assets) leaves the all-partition verification to its own job
    assert defs.resolve_job_def("study_pipeline").asset_layer.selected_asset_keys == {dg.AssetKey("bronze_like")}


def _mart(con, table: str, rows: list[tuple]) -> None:
    con.execute(f"create or replace table {table} (tenant_id varchar, study_id varchar, site varchar, rate double, d date)")
    con.executemany(f"insert into {table} values (?, ?, ?, ?, ?)", rows)


ROWS = [("acme", "S1", "s01", 0.5, "2024-01-02"), ("acme", "S1", "s02", None, None), ("acme", "S1", "s01", 0.25, "2024-01-01"),
        ("beta", "S1", "s01", 9.0, "2024-01-01")]


def test_partition_rows_hash_is_canonical_and_partition_scoped():
    con = duckdb.connect()
    _mart(con, "a", ROWS)
    _mart(con, "b", ROWS[::-1])  # same rows, other physical order
    _mart(con, "c", ROWS[:3] + [("beta", "S1", "s01", 1.0, "2024-01-01")])  # another partition's row changed
    _mart(con, "d", [ROWS[0], ROWS[1], ("acme", "S1", "s01", 0.26, "2024-01-01"), ROWS[3]])
    digest = duckdb_partition_sha256(con, "a", "acme", "S1")
    assert digest == duckdb_partition_sha256(con, "b", "acme", "S1") == duckdb_partition_sha256(con, "c", "acme", "S1")
    assert digest != duckdb_partition_sha256(con, "d", "acme", "S1")
    assert digest != duckdb_partition_sha256(con, "a", "beta", "S1")
    con.execute("create table nokeys as select 1 as x")
    with pytest.raises(ValueError, match="no tenant_id/study_id"):
        duckdb_partition_sha256(con, "nokeys", "acme", "S1")


def test_mart_rows_changed_after_their_manifest_are_caught(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        _mart(con, '"main"."mart_x"', ROWS)
        digest = duckdb_partition_sha256(con, '"main"."mart_x"', "acme", "S1")
    store = LocalLineageStore(tmp_path / "lake", FileSigner(tmp_path / "k.pem"))
    store.append("acme", "S1", {"asset_key": "dbt/mart_x", "output_sha256": digest,
                                "outputs": [warehouse_dataset(f"duckdb://{db}", '"main"."mart_x"', digest)]})
    report = verify(store)
    assert report.ok and report.partitions[0].outputs_checked == 1
    with duckdb.connect(str(db)) as con:
        con.execute("update mart_x set rate = 0.3 where site = 's02' and tenant_id = 'acme'")
    first = verify(store).first_failure
    assert (first.sequence, first.asset_key) == (0, "dbt/mart_x") and "changed after its manifest" in first.problem
    with duckdb.connect(str(db)) as con:
        con.execute("drop table mart_x")
    assert "missing from the lake now" in verify(store).first_failure.problem


def test_mart_view_over_a_corrupted_lake_file_is_named(tmp_path):
    """A dbt view whose Parquet source was damaged after the manifest: a failure, not a crash."""
    db, parquet = tmp_path / "warehouse.duckdb", tmp_path / "dm.parquet"
    with duckdb.connect(str(db)) as con:
        _mart(con, "src", ROWS)
        con.execute(f"copy src to '{parquet}' (format parquet)")
        con.execute(f"create view stg_dm as select * from read_parquet('{parquet}')")
        digest = duckdb_partition_sha256(con, '"main"."stg_dm"', "acme", "S1")
    store = LocalLineageStore(tmp_path / "lake", FileSigner(tmp_path / "k.pem"))
    store.append("acme", "S1", {"asset_key": "dbt/stg_dm", "output_sha256": digest,
                                "outputs": [warehouse_dataset(f"duckdb://{db}", '"main"."stg_dm"', digest)]})
    assert verify(store).ok
    parquet.write_bytes(parquet.read_bytes()[:-10])
    first = verify(store).first_failure
    assert first.asset_key == "dbt/stg_dm" and "cannot be read now" in first.problem
