"""``trialsynth doctor``: check every service the settings configure and print what was found, one
line each; exit 1 when anything is wrong (a wrong setting fails here, not in the middle of a run).

- Dagster storage: the SQLite folder, or a Postgres login to the configured database;
- warehouse: the DuckDB file, or ClickHouse's ``/ping`` plus a query as the configured user;
- lineage store: the lake folder, or the S3 bucket, which must exist with Object Lock enabled;
- lake: the local folders, or the lake bucket (a probe object written, read back and deleted under
  ``<s3_prefix>/lake/_doctor/``) and the raw zone's bucket (Object Lock enabled when
  ``lake.raw_retention_days`` > 0; nothing is written there: it would be locked);
- model registry: a connection to its SQLAlchemy URL.

Nothing else is created or written.
"""

from __future__ import annotations

import argparse
import os
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trialsynth.settings import PROJECT_ROOT, Settings, get_settings

TIMEOUT_S = 5


@dataclass(frozen=True)
class Check:
    """One service's finding: ``ok`` and a line saying what was found (or what to do)."""

    service: str
    ok: bool
    detail: str


class Problem(Exception):
    """A service is misconfigured or unreachable; the message says what was found and what to do."""


def _writable_folder(path: Path) -> str:
    """Where ``path`` is (or would be created): an existing folder, or the nearest existing parent."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise Problem(f"{existing} is not a writable folder (needed for {path})")
    return "exists" if existing == path else f"will be created under {existing}"


def _secret(env_name: str, what: str) -> str:
    value = os.environ.get(env_name)
    if not value:
        raise Problem(f"the {what} password env var {env_name} is not set (settings name it; set it, e.g. "
                      "`source .stack/stack.env` for the local stack)")
    return value


def check_dagster_storage(s: Settings) -> str:
    if s.dagster_storage == "sqlite":
        return f"SQLite in {s.dagster_home_path} ({_writable_folder(s.dagster_home_path)})"
    import psycopg2

    pg = s.postgres
    where = f"postgres {pg.user}@{pg.host}:{pg.port}/{pg.db}"
    try:
        conn = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname=pg.db,
                                password=_secret(pg.password_env, "Postgres"), connect_timeout=TIMEOUT_S)
    except psycopg2.Error as exc:
        raise Problem(f"{where}: cannot connect: {str(exc).strip()}") from exc
    try:
        with conn.cursor() as cur:
            cur.execute("select current_setting('server_version'), to_regclass('runs') is not null")
            version, has_runs = cur.fetchone()
    finally:
        conn.close()
    return f"{where} (PostgreSQL {version}; {'Dagster tables present' if has_runs else 'Dagster creates its tables on first use'})"


def check_warehouse(s: Settings) -> str:
    if s.warehouse.target == "duckdb":
        path = s.warehouse_path
        if not path.exists():
            return f"DuckDB {path} (not built yet; folder {_writable_folder(path.parent)})"
        return f"DuckDB {path} ({_duckdb_tables(path)})"
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import ClickHouseError

    wh = s.warehouse
    url = f"{'https' if wh.clickhouse_secure else 'http'}://{wh.clickhouse_host}:{wh.clickhouse_port}"
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=TIMEOUT_S) as response:
            pong = response.read().strip()
    except OSError as exc:
        raise Problem(f"ClickHouse {url}: /ping failed ({exc}); is the server running (`make stack-up` for the "
                      "local stack)?") from exc
    if pong != b"Ok.":
        raise Problem(f"ClickHouse {url}: /ping answered {pong[:80]!r}, not a ClickHouse HTTP endpoint")
    password = os.environ.get(wh.clickhouse_password_env, "")
    try:
        client = clickhouse_connect.get_client(host=wh.clickhouse_host, port=wh.clickhouse_port, username=wh.clickhouse_user,
                                               password=password, secure=wh.clickhouse_secure, compress=False,
                                               connect_timeout=TIMEOUT_S)
        version = client.command("SELECT version()")
        exists = client.command("SELECT count() FROM system.databases WHERE name = {db:String}",
                                parameters={"db": wh.clickhouse_database})
    except ClickHouseError as exc:
        hint = f" (password from env var {wh.clickhouse_password_env}{'' if password else ', which is not set'})"
        raise Problem(f"ClickHouse {url} as {wh.clickhouse_user}: {str(exc).strip()[:300]}{hint}") from exc
    state = "present" if exists == 1 else "created by the first dbt build"
    return f"ClickHouse {version} at {url} as {wh.clickhouse_user}; database {wh.clickhouse_database} {state}"


def _duckdb_tables(path: Path) -> str:
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            return "in use by a running build"
        raise Problem(f"DuckDB {path}: cannot open: {exc}") from exc
    except duckdb.Error as exc:
        raise Problem(f"DuckDB {path}: cannot open: {exc}") from exc
    try:
        count = con.execute("select count(*) from information_schema.tables").fetchall()[0][0]
    finally:
        con.close()
    return f"{count} tables and views"


def check_lineage_store(s: Settings) -> str:
    if s.lineage.store == "local":
        return f"local files in {s.lake_dir} ({_writable_folder(s.lake_dir)})"
    lin = s.lineage
    where = f"s3://{lin.s3_bucket} at {lin.s3_endpoint_url or 'AWS'}"
    client = _s3_client(lin.s3_endpoint_url, os.environ.get("AWS_REGION", "us-east-1"))
    _head_bucket(client, lin.s3_bucket, where, "create it with Object Lock enabled")
    _require_object_lock(client, lin.s3_bucket, where, "lineage", "lineage.s3_bucket")
    return f"{where}, Object Lock enabled; COMPLIANCE retention {lin.s3_retention_days} days per object"


def _s3_client(endpoint_url: str | None, region: str):
    import boto3
    from botocore.config import Config

    # A fresh session: boto3's default session keeps the first credentials it resolved in the process.
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S))


def _head_bucket(client, bucket: str, where: str, what_to_do: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        raise Problem(f"{where}: bucket not reachable ({exc.response.get('Error', {}).get('Code')}): {what_to_do}, "
                      "or check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from exc
    except BotoCoreError as exc:
        raise Problem(f"{where}: {exc}") from exc


def _require_object_lock(client, bucket: str, where: str, what: str, setting: str) -> None:
    from botocore.exceptions import ClientError

    try:
        lock = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError as exc:
        lock = {"error": exc.response.get("Error", {}).get("Code")}
    if lock.get("ObjectLockEnabled") != "Enabled":
        raise Problem(f"{where}: the bucket has no Object Lock ({lock}); {what} needs a bucket created with Object "
                      f"Lock enabled (it cannot be turned on later): create a new bucket with it and set {setting}")


def check_lake(s: Settings) -> str:
    if s.lake.store == "local":
        return (f"local folders {s.lake_dir} ({_writable_folder(s.lake_dir)}) and raw zone {s.raw_dir} "
                f"({_writable_folder(s.raw_dir)})")
    from botocore.exceptions import BotoCoreError, ClientError

    lake = s.lake
    client = _s3_client(lake.s3_endpoint_url, lake.s3_region)
    where = f"s3://{lake.s3_bucket} at {lake.s3_endpoint_url or 'AWS'}"
    _head_bucket(client, lake.s3_bucket, where, "create the lake bucket")
    probe = "/".join(p for p in (lake.s3_prefix, "lake", "_doctor", f"probe-{uuid.uuid4().hex}") if p)
    body = uuid.uuid4().bytes
    step = "write"
    try:
        client.put_object(Bucket=lake.s3_bucket, Key=probe, Body=body, ChecksumAlgorithm="SHA256")
        step = "read back"
        if client.get_object(Bucket=lake.s3_bucket, Key=probe)["Body"].read() != body:
            raise Problem(f"{where}: the probe object {probe} read back different bytes")
        step = "delete"
        client.delete_object(Bucket=lake.s3_bucket, Key=probe)
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else exc
        raise Problem(f"{where}: cannot {step} the probe object {probe} ({code}); the lake's writers need "
                      "s3:PutObject, s3:GetObject, s3:DeleteObject and s3:ListBucket under the prefix") from exc
    found = f"{where}: probe written, read back and deleted under {probe.rsplit('/', 1)[0]}/"
    raw_where = f"s3://{lake.raw_bucket} at {lake.s3_endpoint_url or 'AWS'}"
    if lake.raw_bucket != lake.s3_bucket:
        _head_bucket(client, lake.raw_bucket, f"raw zone {raw_where}", "create it with Object Lock enabled")
    if lake.raw_retention_days <= 0:
        return f"{found}; raw zone in s3://{lake.raw_bucket} without Object Lock (lake.raw_retention_days: 0)"
    _require_object_lock(client, lake.raw_bucket, f"raw zone {raw_where}", "the raw zone (lake.raw_retention_days > 0)",
                         "lake.s3_raw_bucket")
    return (f"{found}; raw zone in s3://{lake.raw_bucket}, Object Lock enabled, COMPLIANCE retention "
            f"{lake.raw_retention_days:g} days per object")


def check_registry(s: Settings) -> str:
    import sqlalchemy as sa

    url = sa.make_url(s.registry_sqlalchemy_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database:
        return f"{shown} ({_writable_folder(Path(url.database))})"
    engine = sa.create_engine(url, connect_args={"connect_timeout": TIMEOUT_S} if url.get_backend_name() == "postgresql" else {})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.SQLAlchemyError as exc:
        raise Problem(f"{shown}: cannot connect: {str(getattr(exc, 'orig', None) or exc).strip()[:300]}") from exc
    finally:
        engine.dispose()
    return f"{shown} (connected)"


CHECKS: dict[str, Callable[[Settings], str]] = {
    "dagster storage": check_dagster_storage,
    "warehouse": check_warehouse,
    "lineage store": check_lineage_store,
    "lake": check_lake,
    "model registry": check_registry,
}


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in order; a check never raises (its failure is a Check with ok=False)."""
    found = []
    for service, check in CHECKS.items():
        try:
            found.append(Check(service, True, check(settings)))
        except Problem as exc:
            found.append(Check(service, False, str(exc)))
        except Exception as exc:  # a driver error nobody foresaw must still name the service
            found.append(Check(service, False, f"{type(exc).__name__}: {exc}"))
    return found


def _settings_source() -> str:
    path = Path(os.environ.get("TRIALSYNTH_CONFIG", PROJECT_ROOT / "trialsynth.yaml"))
    return f"{path} + TRIALSYNTH_* env vars" if path.is_file() else "defaults + TRIALSYNTH_* env vars (no settings file)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="check every configured service (storage, warehouse, lineage, lake, registry)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"settings: {_settings_source()}")
    try:
        settings = get_settings()
    except ValueError as exc:  # pydantic's ValidationError names the bad field and value
        print(f"FAIL  settings         {exc}")
        return 1
    checks = run_checks(settings)
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'}  {check.service:<16} {' '.join(check.detail.split())}")
    problems = sum(not c.ok for c in checks)
    print("all services reachable" if not problems else f"{problems} problem(s) found")
    return 1 if problems else 0
