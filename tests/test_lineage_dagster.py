"""The lineage_verification asset, its check and nightly schedule; Dagster run ids in manifests;
dbt mart outputs hashed as the partition's rows in canonical order and re-checked."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from decimal import Decimal

import dagster as dg
import duckdb
import pytest

from assets.lineage import CHECK, lineage_verification
from orchestration.resources import LineageResource
from tests.lineage_support import fill, raw_write, verify
from trialsynth.hashing import canonical_json
from trialsynth.lineage import FileSigner, LocalLineageStore, run_verification, warehouse_dataset
from trialsynth.lineage import rows as rows_mod
from trialsynth.lineage.audit import STATUS_PATH
from trialsynth.lineage.rows import clickhouse_partition_sha256, duckdb_partition_sha256, partition_hasher
from trialsynth.settings import get_settings


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
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING  # on without anyone switching it on
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


# One row per type dbt marts produce, on both engines: text, integers, doubles, decimals, dates,
# timestamps, booleans, NULLs; the DDL differs, the values are the same.
TYPED_COLUMNS = ["tenant_id", "study_id", "site", "n", "rate", "amount", "d", "ts", "flag"]
TYPED_ROWS = [
    ("acme", "S1", "s01", 3, 0.1, Decimal("12.500"), dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 3, 4, 5), True),
    ("acme", "S1", "s02", -7, None, Decimal("0.125"), None, dt.datetime(2024, 2, 29, 23, 59, 59, 250000), False),
    ("acme", "S1", "s01", 3, 1e-300, None, dt.date(1970, 1, 1), None, None),
    ("acme", "S1", "é/ü", 2**40, 2.5, Decimal("-3"), dt.date(2024, 1, 1), dt.datetime(2024, 1, 1), True),
    ("beta", "S1", "s01", 1, 9.0, Decimal("1"), dt.date(2024, 1, 1), dt.datetime(2024, 1, 1), False),
]
DUCKDB_DDL = ("tenant_id varchar, study_id varchar, site varchar, n bigint, rate double, amount decimal(18, 3), d date, "
              "ts timestamp, flag boolean")
CLICKHOUSE_DDL = ("tenant_id String, study_id String, site String, n Int64, rate Nullable(Float64), "
                  "amount Nullable(Decimal(18, 3)), d Nullable(Date), ts Nullable(DateTime64(6)), flag Nullable(Bool)")


def _clickhouse(endpoint, database: str | None = None):
    import clickhouse_connect

    return clickhouse_connect.get_client(host=endpoint.host, port=endpoint.port, username=endpoint.user,
                                         password=endpoint.password, database=database or "default", compress=False)


def _clickhouse_table(client, table: str, rows: list[tuple]) -> None:
    client.command(f"create or replace table {table} ({CLICKHOUSE_DDL}) engine = MergeTree order by tuple()")
    client.insert(table, rows, column_names=TYPED_COLUMNS)


def test_partition_rows_hash_is_the_same_from_duckdb_and_clickhouse(clickhouse_endpoint):
    """The canonical rows hash depends on the rows only: the same rows in DuckDB and in ClickHouse (other
    DDL, other physical order, another partition beside them) hash the same; one value changed does not."""
    con = duckdb.connect()
    for table, rows in (("a", TYPED_ROWS), ("b", TYPED_ROWS[::-1])):
        con.execute(f"create table {table} ({DUCKDB_DDL})")
        con.executemany(f"insert into {table} values ({', '.join('?' * len(TYPED_COLUMNS))})", rows)
    client = _clickhouse(clickhouse_endpoint)
    database = f"lineage_{uuid.uuid4().hex[:8]}"
    client.command(f"create database {database}")
    _clickhouse_table(client, f"{database}.a", TYPED_ROWS[::-1])
    changed = [TYPED_ROWS[0], TYPED_ROWS[1], (*TYPED_ROWS[2][:4], 2e-300, *TYPED_ROWS[2][5:]), *TYPED_ROWS[3:]]
    _clickhouse_table(client, f"{database}.changed", changed)
    digest = duckdb_partition_sha256(con, "a", "acme", "S1")
    assert digest == duckdb_partition_sha256(con, "b", "acme", "S1")
    assert clickhouse_partition_sha256(client, f"{database}.a", "acme", "S1") == digest
    assert clickhouse_partition_sha256(client, f"`{database}`.`changed`", "acme", "S1") != digest
    assert clickhouse_partition_sha256(client, f"{database}.changed", "beta", "S1") == duckdb_partition_sha256(
        con, "a", "beta", "S1")
    # the definition, written out independently: sorted sha256 of each row's canonical JSON, after the columns
    rows = con.execute("select * from a where tenant_id = 'acme'").fetchall()
    lines = sorted(hashlib.sha256(canonical_json([rows_mod.canonical_value(v) for v in r]).encode()).digest() for r in rows)
    assert digest == hashlib.sha256(canonical_json(TYPED_COLUMNS).encode() + b"\n" + b"".join(lines)).hexdigest()


def test_clickhouse_mart_rows_are_recorded_and_rechecked(settings, clickhouse_endpoint, monkeypatch):
    """warehouse.target clickhouse: the dbt step's hasher records the partition rows' hash, and
    verification re-hashes them in ClickHouse and names a changed row."""
    database = f"lineage_{uuid.uuid4().hex[:8]}"
    for name, value in {"TRIALSYNTH_WAREHOUSE__TARGET": "clickhouse", "TRIALSYNTH_WAREHOUSE__CLICKHOUSE_HOST": clickhouse_endpoint.host,
                        "TRIALSYNTH_WAREHOUSE__CLICKHOUSE_PORT": str(clickhouse_endpoint.port),
                        "TRIALSYNTH_WAREHOUSE__CLICKHOUSE_DATABASE": database,
                        "TRIALSYNTH_CLICKHOUSE_PASSWORD": clickhouse_endpoint.password}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    s = get_settings()
    client = _clickhouse(clickhouse_endpoint)
    client.command(f"create database {database}")
    _clickhouse_table(client, f"{database}.mart_x", TYPED_ROWS)
    relation = f"`{database}`.`mart_x`"
    with partition_hasher(s) as (namespace, row_sha256):
        digest = row_sha256(relation, "acme", "S1")
    assert namespace == f"clickhouse://{clickhouse_endpoint.host}:{clickhouse_endpoint.port}"
    store = LocalLineageStore(s.lake_dir)
    store.append("acme", "S1", {"asset_key": "dbt/mart_x", "output_sha256": digest,
                                "outputs": [warehouse_dataset(namespace, relation, digest)]})
    report = run_verification(s, store, write_status=False)
    assert report.ok and report.partitions[0].outputs_checked == 1, report.describe()
    client.command(f"alter table {database}.mart_x update rate = 0.3 where site = 's02' settings mutations_sync = 1")
    first = run_verification(s, store, write_status=False).first_failure
    assert (first.sequence, first.asset_key) == (0, "dbt/mart_x") and "changed after its manifest" in first.problem
    client.command(f"drop table {database}.mart_x")
    assert "missing from the lake now" in run_verification(s, store, write_status=False).first_failure.problem


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


def test_the_code_location_verifies_lineage_nightly_and_feeds_the_status_mart():
    """As loaded by `dagster dev`: the schedule is there and on, and the status mart is built from
    the verification asset."""
    from orchestration.definitions import defs

    schedule = defs.resolve_schedule_def("nightly_lineage_verification")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.job_name == "verify_lineage"
    mart = defs.resolve_asset_graph().get(dg.AssetKey("mart_lineage_status"))
    assert dg.AssetKey("lineage_verification") in mart.parent_keys and mart.automation_condition is not None
