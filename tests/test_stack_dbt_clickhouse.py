"""dbt_project on the ClickHouse target (issue 10, item 2).

- The ClickHouse settings reach dbt: with `warehouse.target: clickhouse` settings pointing at the
  stack's endpoint, the env that assets/warehouse.py gives dbt makes dbt_project's `clickhouse`
  profile connect there, as that user, with the password from the env var the settings name.
- Physical design: every star-schema and mart model is a MergeTree table partitioned by
  (tenant_id, study_id) with a sorting key beginning with them; DuckDB gets none of it.
- A partition-scoped run reads only its partition's lake folder (file() locally, s3() on S3 with
  credentials never in the project's SQL) and swaps its rows in with REPLACE PARTITION: an empty
  re-drop empties the partition, a failing rebuild leaves the old rows in place (DuckDB: the
  delete+insert transaction rolls back), other partitions are untouched.
- The slow test builds every model and data test of dbt_project in the endpoint and rebuilds one
  partition.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import clickhouse_connect
import pytest
import yaml
from dbt.cli.main import dbtRunner, dbtRunnerResult

from infra.stack.clickhouse import ClickHouseEndpoint
from tests.test_dbt_project import (
    ACME,
    DBT_DIR,
    PILOT,
    acme_rows,
    pilot_rows,
    query,
    write_bronze,
    write_fixture_lake,
)
from trialsynth.settings import get_settings

ACME_VARS = json.dumps({"tenant": ACME[0], "study": ACME[1]})
KEYS = ["tenant_id", "study_id"]


# --------------------------------------------------------------------------- helpers (also used by
# tests/test_clickhouse_same_numbers.py)
def clickhouse_dbt_env(endpoint: ClickHouseEndpoint, database: str) -> dict[str, str]:
    """The env assets/warehouse.py dbt_environment() gives dbt for settings pointing at ``endpoint``
    (database ``database``), plus the password under the env var those settings name."""
    from assets.warehouse import dbt_environment  # imported late: it parses the dbt project

    overrides = {"TRIALSYNTH_WAREHOUSE__TARGET": "clickhouse", "TRIALSYNTH_WAREHOUSE__CLICKHOUSE_HOST": endpoint.host,
                 "TRIALSYNTH_WAREHOUSE__CLICKHOUSE_PORT": str(endpoint.port),
                 "TRIALSYNTH_WAREHOUSE__CLICKHOUSE_USER": endpoint.user,
                 "TRIALSYNTH_WAREHOUSE__CLICKHOUSE_DATABASE": database}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in overrides.items():
            mp.setenv(name, value)
        get_settings.cache_clear()
        env = dbt_environment()
        password_env = get_settings().warehouse.clickhouse_password_env
    get_settings.cache_clear()
    return {**env, password_env: endpoint.password}


def clickhouse_client(endpoint: ClickHouseEndpoint, database: str = "default"):
    return clickhouse_connect.get_client(host=endpoint.host, port=endpoint.port, username=endpoint.user,
                                         password=endpoint.password, database=database, compress=False)


def dbt(args: list[str], target: str, work: Path) -> dbtRunnerResult:
    """dbt in-process on dbt_project for ``target``, artefacts and logs under ``work``."""
    return dbtRunner().invoke([*args, "--target", target, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
                               "--target-path", str(work / "target"), "--log-path", str(work / "logs"), "--quiet"])


def failures(result: dbtRunnerResult) -> list[str]:
    return [f"{r.node.name}: {r.status} {r.message}" for r in result.result or []
            if str(r.status) not in ("success", "pass", "warn")]


def compiled(work: Path) -> dict[str, dict]:
    """Model name -> manifest node of the last dbt command run with ``work``."""
    nodes = json.loads((work / "target" / "manifest.json").read_text())["nodes"]
    return {n["name"]: n for n in nodes.values() if n["resource_type"] == "model"}


# --------------------------------------------------------------------------- settings -> profile
@pytest.fixture
def clickhouse_settings(stack, settings, monkeypatch):
    for name, value in stack.environment().items():
        monkeypatch.setenv(name, value)
    # The password under a non-default env var name, which the settings name.
    monkeypatch.delenv("TRIALSYNTH_CLICKHOUSE_PASSWORD")
    monkeypatch.setenv("CH_SECRET_FOR_TEST", stack.clickhouse.password)
    monkeypatch.setenv("TRIALSYNTH_WAREHOUSE__CLICKHOUSE_PASSWORD_ENV", "CH_SECRET_FOR_TEST")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _dbt_debug(monkeypatch) -> bool:
    from assets.warehouse import dbt_environment  # imported late: it parses the dbt project

    for name, value in dbt_environment().items():
        monkeypatch.setenv(name, value)
    s = get_settings()
    project = str(s.dbt_project_path)
    return dbtRunner().invoke(["debug", "--target", "clickhouse", "--project-dir", project, "--profiles-dir", project,
                               "--quiet"]).success


def test_dbt_connects_where_the_settings_say(clickhouse_settings, stack, monkeypatch) -> None:
    assert clickhouse_settings.warehouse.clickhouse_port == stack.clickhouse.port != 8123
    assert _dbt_debug(monkeypatch)


def test_dbt_fails_without_the_named_password(clickhouse_settings, monkeypatch) -> None:
    monkeypatch.setenv("CH_SECRET_FOR_TEST", "wrong")
    assert not _dbt_debug(monkeypatch)


# --------------------------------------------------------------------------- physical design and reads (no server)
@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict]]:
    """target -> model -> manifest node: DuckDB from `dbt parse`, ClickHouse from a compile of two
    models for partition acme (configs need no warehouse)."""
    out = {}
    work = tmp_path_factory.mktemp("parse_duckdb")
    assert dbt(["parse"], "duckdb", work).success
    out["duckdb"] = compiled(work)
    work = tmp_path_factory.mktemp("compile_clickhouse")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_LAKE_DIR", "/lake")
        result = dbt(["compile", "--no-populate-cache", "--select", "stg_dm", "mart_power_curves", "--vars", ACME_VARS],
                     "clickhouse", work)
    assert result.success, result.exception
    out["clickhouse"] = compiled(work)
    return out


def test_every_model_is_materialized_on_both_targets(parsed: dict[str, dict[str, dict]]) -> None:
    duck, ch = parsed["duckdb"], parsed["clickhouse"]
    assert set(duck) == set(ch) and len(ch) > 25
    for name, node in ch.items():
        expected = "view" if name.startswith("stg_") else "incremental"
        if name == "stg_lineage_status":  # ephemeral: its file changes outside dbt (see the model's SQL)
            expected = "ephemeral"
        assert node["config"]["materialized"] == duck[name]["config"]["materialized"] == expected, name


def test_clickhouse_tables_are_mergetree_partitioned_by_tenant_and_study(parsed: dict[str, dict[str, dict]]) -> None:
    tables = {n: node["config"] for n, node in parsed["clickhouse"].items() if not n.startswith("stg_")}
    for name, config in tables.items():
        assert re.fullmatch(r"\w*MergeTree\(.*\)", config["engine"]), (name, config["engine"])
        assert config["order_by"][:2] == KEYS, (name, config["order_by"])
        assert config["partition_by"] == "(tenant_id, study_id)", name
        assert config["incremental_strategy"] == "insert_overwrite" and not config["unique_key"], name
    # the sorting key is chosen per model: not one default everywhere
    assert len({tuple(c["order_by"]) for c in tables.values()}) > 10


def test_duckdb_keeps_delete_insert_and_ignores_the_clickhouse_design(parsed: dict[str, dict[str, dict]]) -> None:
    for name, node in parsed["duckdb"].items():
        if name.startswith("stg_"):
            continue
        config = node["config"]
        assert config["incremental_strategy"] == "delete+insert" and config["unique_key"] == "tenant_id, study_id", name
        assert not config["partition_by"], name  # dbt-duckdb would try to partition (DuckLake only) and warn


def test_a_partition_run_reads_only_its_folder(parsed: dict[str, dict[str, dict]]) -> None:
    stg, power = parsed["clickhouse"]["stg_dm"], parsed["clickhouse"]["mart_power_curves"]
    assert "file('/lake/{acme}/{ACME-001}/bronze/dm.parquet', 'Parquet')" in stg["compiled_code"]
    assert "file('/lake/{acme}/{ACME-001}/design/power_curves.parquet', 'Parquet'," in power["compiled_code"]
    assert "/*/*/" not in stg["compiled_code"] + power["compiled_code"]
    # the run's views live in a schema of their own: another partition's run never redefines them
    assert re.fullmatch(r"trialsynth__acme__acme_001_[0-9a-f]{6}", stg["schema"]) and power["schema"] == "trialsynth"


def test_an_s3_lake_is_read_with_s3_and_credentials_stay_out_of_the_sql(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    url = "http://127.0.0.1:9/trialsynth-lake/lake"
    monkeypatch.setenv("TRIALSYNTH_LAKE_DIR", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-never-in-git")
    monkeypatch.setenv("TRIALSYNTH_DBT_LAKE_S3_COLLECTION", "trialsynth_lake")
    assert dbt(["compile", "--no-populate-cache", "--select", "stg_dm", "--vars", ACME_VARS], "clickhouse", tmp_path).success
    # named collection: url and keys stay in ClickHouse, dbt passes the path below the lake root
    assert ("s3(trialsynth_lake, filename = '{acme}/{ACME-001}/bronze/dm.parquet', format = 'Parquet')"
            in compiled(tmp_path)["stg_dm"]["compiled_code"])
    assert not any("secret-never-in-git" in p.read_text() for p in (tmp_path / "target").rglob("*.sql"))
    # without one: the keys of the environment, as arguments of s3(); without vars, every partition
    monkeypatch.delenv("TRIALSYNTH_DBT_LAKE_S3_COLLECTION")
    assert dbt(["compile", "--no-populate-cache", "--select", "stg_dm"], "clickhouse", tmp_path).success
    stg = compiled(tmp_path)["stg_dm"]
    assert f"s3('{url}/*/*/bronze/dm.parquet', 'AKIDTEST', 'secret-never-in-git', 'Parquet')" in stg["compiled_code"]
    assert stg["schema"] == "trialsynth"
    committed = [p for d in ("models", "macros", "tests") for p in (DBT_DIR / d).rglob("*") if p.is_file()]
    assert not any("secret-never-in-git" in p.read_text() for p in committed + [DBT_DIR / "dbt_project.yml"])


# --------------------------------------------------------------------------- partition replacement
SMALL = ["stg_dm", "stg_ae", "fact_ae"]


@pytest.mark.parametrize("target", ["duckdb", "clickhouse"])
def test_a_partition_rebuild_replaces_its_rows_and_never_loses_them(target: str, request, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """fact_ae of the two-tenant fixture: a failing rebuild of acme keeps acme's rows (ClickHouse:
    nothing is deleted, the new rows never reach REPLACE PARTITION; DuckDB: the pre-hook's delete
    is rolled back), then an acme re-drop without AEs empties acme and leaves pilot as it was."""
    lake = tmp_path / "lake"
    write_fixture_lake(lake)
    endpoint, database = None, f"t_{uuid.uuid4().hex[:10]}"
    env = {"TRIALSYNTH_LAKE_DIR": str(lake), "TRIALSYNTH_WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    if target == "clickhouse":
        endpoint = request.getfixturevalue("clickhouse_endpoint")
        env = {**clickhouse_dbt_env(endpoint, database), **env}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def run(*args: str, select: list[str] = SMALL) -> dbtRunnerResult:
        return dbt(["run", "--select", *select, *args], target, tmp_path)

    def counts() -> dict[str, int]:
        sql = "select tenant_id, count(*) from fact_ae group by tenant_id"
        if endpoint is not None:
            return dict(clickhouse_client(endpoint, database).query(sql).result_rows)
        return dict(query(tmp_path / "warehouse.duckdb", sql))  # dbt-duckdb keeps the file open in-process

    try:
        for args in ((), ("--vars", ACME_VARS)):  # every partition, then acme's own staging views
            result = run(*args)
            assert result.success, failures(result) or result.exception
        assert counts() == {"acme": 2, "pilot": 1}

        ae = lake / ACME[0] / ACME[1] / "bronze" / "ae.parquet"
        ae.write_bytes(b"not parquet")
        assert not run("--vars", ACME_VARS, select=["fact_ae"]).success
        assert counts() == {"acme": 2, "pilot": 1}
        log = (tmp_path / "logs" / "dbt.log").read_text()
        if endpoint is not None:
            assert "replace partition id" in log and not re.search(r"(?i)\bdelete\s+from\b", log)
        else:
            deletes = list(re.finditer(r"delete from \S+fact_ae\S* where \(tenant_id = 'acme'", log))
            assert deletes and "ROLLBACK" in log[deletes[-1].end():]

        acme = acme_rows()
        del acme["ae"]  # re-drop without AEs
        write_bronze(lake, *ACME, acme)
        pilot = pilot_rows()
        pilot["ae"].append({**pilot["ae"][0], "AESEQ": 2.0})  # changed too, but not rebuilt
        write_bronze(lake, *PILOT, pilot, extras=("DMDTC",))
        result = run("--vars", ACME_VARS)
        assert result.success, failures(result) or result.exception
        assert counts() == {"pilot": 1}
    finally:
        if endpoint is not None:
            clickhouse_client(endpoint).command(f"DROP DATABASE IF EXISTS {database}")


# --------------------------------------------------------------------------- the lake on S3
def test_clickhouse_reads_the_partition_from_an_s3_lake(seaweedfs, clickhouse_endpoint, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture lake uploaded to SeaweedFS, read through a named collection holding the bucket's
    URL and keys (created in ClickHouse, never seen by dbt): the same rows as from local files."""
    bucket, database = f"lake-{uuid.uuid4().hex[:8]}", f"t_{uuid.uuid4().hex[:10]}"
    write_fixture_lake(tmp_path / "lake")
    seaweedfs.make_bucket(bucket)
    s3 = seaweedfs.client()
    for path in (tmp_path / "lake").rglob("*.parquet"):
        s3.put_object(Bucket=bucket, Key=f"lake/{path.relative_to(tmp_path / 'lake')}", Body=path.read_bytes(),
                      ChecksumAlgorithm="SHA256")
    url = f"{seaweedfs.endpoint}/{bucket}/lake"
    client = clickhouse_client(clickhouse_endpoint)
    client.command(f"CREATE NAMED COLLECTION lake_{database} AS url = '{url}/', "
                   f"access_key_id = '{seaweedfs.access_key}', secret_access_key = '{seaweedfs.secret_key}'")
    env = {**clickhouse_dbt_env(clickhouse_endpoint, database), "TRIALSYNTH_LAKE_DIR": url,
           "TRIALSYNTH_DBT_LAKE_S3_COLLECTION": f"lake_{database}", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    try:
        result = dbt(["run", "--select", *SMALL, "--vars", ACME_VARS], "clickhouse", tmp_path)
        assert result.success, failures(result) or result.exception
        rows = clickhouse_client(clickhouse_endpoint, database).query(
            "select usubjid, seq, is_serious, days_onset_to_entry from fact_ae order by usubjid").result_rows
        assert rows == [("A-001", 1, False, 8), ("A-002", 1, True, 1)]  # acme's two AEs (tests/test_dbt_project.py)
        assert seaweedfs.secret_key not in "".join(p.read_text() for p in (tmp_path / "target").rglob("*.sql"))
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.command(f"DROP NAMED COLLECTION IF EXISTS lake_{database}")


def test_clickhouse_reads_an_sse_c_lake_with_the_partition_tenants_key(seaweedfs, clickhouse_endpoint, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture lake written by the lake store under each tenant's SSE-C key (issue 12): dbt's s3() sends
    acme's key as request headers (what the Dagster step does, assets.warehouse.lake_headers) and reads the
    same rows as from plain objects; without a key, or with another tenant's, the build fails instead of
    reading nothing. The step's artefacts (compiled SQL, manifest, logs) keep no copy of the key."""
    from assets.warehouse import REDACTED, lake_headers
    from trialsynth.settings import Settings
    from trialsynth.storage import open_lake_store

    bucket, database = f"lake-{uuid.uuid4().hex[:8]}", f"t_{uuid.uuid4().hex[:10]}"
    write_fixture_lake(tmp_path / "lake")
    seaweedfs.make_bucket(bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    settings = Settings(data_dir=tmp_path / "data", warehouse={"target": "clickhouse"},
                        lake={"store": "s3", "s3_bucket": bucket, "s3_endpoint_url": seaweedfs.endpoint})
    store = open_lake_store(settings)
    for path in (tmp_path / "lake").rglob("*.parquet"):
        store.write_bytes(path.relative_to(tmp_path / "lake").as_posix(), path.read_bytes())
    with pytest.raises(Exception, match="Customer provided keys must provide the customer key"):  # a plain GET
        seaweedfs.client().get_object(Bucket=bucket, Key=f"lake/{ACME[0]}/{ACME[1]}/bronze/dm.parquet")
    acme_key, pilot_key = store.reader_headers(ACME[0]), store.reader_headers(PILOT[0])
    assert acme_key and acme_key != pilot_key
    for name, value in {**clickhouse_dbt_env(clickhouse_endpoint, database), "TRIALSYNTH_LAKE_DIR": store.location,
                        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}.items():
        monkeypatch.setenv(name, value)
    try:
        for headers, work in (({}, tmp_path / "none"), (pilot_key, tmp_path / "pilot")):
            with lake_headers(headers, work):
                result = dbt(["run", "--select", *SMALL, "--vars", ACME_VARS], "clickhouse", work)
            assert not result.success, "acme's SSE-C objects were read without acme's key"
        with lake_headers(acme_key, tmp_path / "acme"):
            result = dbt(["run", "--select", *SMALL, "--vars", ACME_VARS], "clickhouse", tmp_path / "acme")
        assert result.success, failures(result) or result.exception
        rows = clickhouse_client(clickhouse_endpoint, database).query(
            "select usubjid, seq, is_serious, days_onset_to_entry from fact_ae order by usubjid").result_rows
        assert rows == [("A-001", 1, False, 8), ("A-002", 1, True, 1)]  # acme's two AEs (tests/test_dbt_project.py)
        artefacts = [p.read_bytes() for p in (tmp_path / "acme").rglob("*") if p.is_file()]
        assert any(REDACTED in data for data in artefacts), "the compiled SQL did carry the key"
        assert not any(acme_key["x-amz-server-side-encryption-customer-key"].encode() in data for data in artefacts)
    finally:
        clickhouse_client(clickhouse_endpoint).command(f"DROP DATABASE IF EXISTS {database}")


# --------------------------------------------------------------------------- the whole project (slow)
@pytest.mark.slow
def test_dbt_project_builds_in_clickhouse_endpoint(clickhouse_settings, stack, monkeypatch, tmp_path) -> None:
    """Every model and data test of dbt_project on the ClickHouse target (the fixture lake of
    test_dbt_project.py), then a partition rebuild that leaves every table's rows as they were."""
    from assets.warehouse import dbt_environment  # imported late: it parses the dbt project

    write_fixture_lake(tmp_path / "lake")
    for name, value in {**dbt_environment(), "TRIALSYNTH_LAKE_DIR": str(tmp_path / "lake")}.items():
        monkeypatch.setenv(name, value)
    client = clickhouse_connect.get_client(host=stack.clickhouse.host, port=stack.clickhouse.port,
                                           password=stack.clickhouse.password, compress=False)

    def table_rows() -> dict[str, int]:
        tables = client.query("SELECT name FROM system.tables WHERE database = 'trialsynth' AND engine LIKE '%MergeTree'")
        return {t: client.command(f"SELECT count() FROM trialsynth.{t}") for (t,) in tables.result_rows}

    first = dbt(["build"], "clickhouse", tmp_path)
    assert first.success, failures(first) or first.exception
    assert sum(r.node.resource_type == "model" for r in first.result) > 25
    built = table_rows()
    assert built["fact_observation"] > 0 and built["dim_subject"] > 0
    keys = client.query("SELECT name, partition_key, sorting_key FROM system.tables WHERE database = 'trialsynth' "
                        "AND engine LIKE '%MergeTree'").result_rows
    assert len(keys) == len(built) and all(p.strip("()") == "tenant_id, study_id" and s.startswith("tenant_id, study_id")
                                           for _, p, s in keys), keys
    again = dbt(["build", "--vars", ACME_VARS], "clickhouse", tmp_path)
    assert again.success, failures(again) or again.exception
    assert table_rows() == built


def test_project_config_names_every_model_once() -> None:
    """dbt_project.yml's per-model sorting keys name models that exist (a typo would silently
    fall back to the folder's default key)."""
    models = {p.stem for p in (DBT_DIR / "models").rglob("*.sql")}
    config = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text())["models"]["trialsynth"]
    named = [k for folder in config.values() for k in folder if not k.startswith("+")]
    assert named and set(named) <= models and len(named) == len(set(named))
