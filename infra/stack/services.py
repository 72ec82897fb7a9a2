"""Start, stop and report the whole stack in one state folder (``.stack/`` for ``make stack-up``).

Each service has its own start/stop function (also used by the pytest fixtures in
tests/stack_fixtures.py); :func:`start_all` runs them, then writes beside them:

- ``ports.env``: the port of each service (``TRIALSYNTH_STACK_*_PORT=...``);
- ``trialsynth.yaml``: the settings that point trialsynth at this stack (no secrets: they are named
  by env var): the raw zone, bronze, quarantine and analytics files in the lake bucket, its own
  ``data/`` (landing zone, local state) and ``dagster_home/``;
- ``stack.env`` (mode 0600): ``export`` lines for those env vars, ``TRIALSYNTH_CONFIG`` and
  ``DAGSTER_HOME``, to ``source`` before running trialsynth on the stack (``make demo-stack`` does);
- ``pgpass`` (mode 0600): libpq's password file, for URLs without a password (the model registry).

The registry database gets row-level security (:func:`trialsynth.tenancy.apply_row_level_security`:
tables owned by ``trialsynth_owner``, FORCE RLS, policy on ``app.current_tenant``) and the settings
point the registry at the non-owner role ``trialsynth_app``. Tenants of ``security.tenants`` get a
ClickHouse role, row policy and user (``infra/clickhouse/tenant_access.sql``) where the server can
store users; the chDB stand-in cannot, which is logged.

A service whose ports are recorded is restarted on the same port when it is free.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from infra.stack.clickhouse import PASSWORD_ENV as CLICKHOUSE_PASSWORD_ENV
from infra.stack.clickhouse import ClickHouseEndpoint, start_clickhouse_endpoint, stop_clickhouse_endpoint
from infra.stack.postgres import APP_ROLE, Postgres, running_port, start_postgres, stop_postgres
from infra.stack.procs import HOST, StackError, port_is_free, running_pid
from infra.stack.seaweedfs import SeaweedFS, start_seaweedfs, stop_seaweedfs

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE = ROOT / ".stack"
LAKE_BUCKET = "trialsynth-lake"
# The raw zone (the sponsor's bytes) in a bucket of its own, created with Object Lock: its objects are
# written once under COMPLIANCE retention. Bronze and analytics stay in LAKE_BUCKET, without versioning,
# because they are replaced at every drop (Object Lock would keep every replaced version) and a bucket
# made before this one could not get Object Lock afterwards.
RAW_BUCKET = "trialsynth-raw"
LINEAGE_BUCKET = "trialsynth-lineage"
PG_PASSWORD_ENV = "TRIALSYNTH_PG_PASSWORD"
CLICKHOUSE_DATABASE = "trialsynth"
PORT_VARS = {"postgres": "TRIALSYNTH_STACK_POSTGRES_PORT", "seaweedfs": "TRIALSYNTH_STACK_S3_PORT",
             "clickhouse": "TRIALSYNTH_STACK_CLICKHOUSE_PORT"}

__all__ = ["Stack", "StackError", "start_all", "stop_all", "status", "start_postgres", "start_seaweedfs",
           "start_clickhouse_endpoint", "stop_postgres", "stop_seaweedfs", "stop_clickhouse_endpoint"]


@dataclass(frozen=True)
class Stack:
    postgres: Postgres
    seaweedfs: SeaweedFS
    clickhouse: ClickHouseEndpoint
    state: Path

    @property
    def config_path(self) -> Path:
        return self.state / "trialsynth.yaml"

    @property
    def env_path(self) -> Path:
        return self.state / "stack.env"

    @property
    def data_dir(self) -> Path:
        return self.state / "data"

    @property
    def dagster_home(self) -> Path:
        return self.state / "dagster_home"

    def settings(self) -> dict:
        """The trialsynth settings (a ``trialsynth.yaml`` mapping) for this stack."""
        pg, s3, ch = self.postgres, self.seaweedfs, self.clickhouse
        return {
            # The landing zone and local state in the stack's own folder, so the embedded default's data/ and
            # .dagster_home are never mixed with the stack's; the raw zone and the lake in the lake bucket.
            "data_dir": str(self.data_dir),
            "dagster_home": str(self.dagster_home),
            "dagster_storage": "postgres",
            "postgres": {"host": pg.host, "port": pg.port, "user": pg.user, "db": "dagster", "password_env": PG_PASSWORD_ENV},
            "registry_url": pg.url("registry", user=APP_ROLE),
            "api": {"store_url": pg.url("registry", user=APP_ROLE)},  # the API's tables, RLS as the registry's
            "warehouse": {"target": "clickhouse", "clickhouse_host": ch.host, "clickhouse_port": ch.port,
                          "clickhouse_user": ch.user, "clickhouse_database": CLICKHOUSE_DATABASE},
            "lineage": {"store": "s3", "s3_bucket": LINEAGE_BUCKET, "s3_endpoint_url": s3.endpoint},
            "lake": {"store": "s3", "s3_bucket": LAKE_BUCKET, "s3_raw_bucket": RAW_BUCKET, "s3_endpoint_url": s3.endpoint},
        }

    def environment(self) -> dict[str, str]:
        """Env vars holding the secrets the settings name (and where the settings are)."""
        return {"TRIALSYNTH_CONFIG": str(self.config_path), PG_PASSWORD_ENV: self.postgres.password,
                "PGPASSFILE": str(self.state / "pgpass"), CLICKHOUSE_PASSWORD_ENV: self.clickhouse.password,
                "AWS_ACCESS_KEY_ID": self.seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": self.seaweedfs.secret_key,
                "AWS_REGION": "us-east-1"}


def _secret_file(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def _recorded_ports(state: Path) -> dict[str, int]:
    path = state / "ports.env"
    if not path.exists():
        return {}
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {name: int(values[var]) for name, var in PORT_VARS.items() if values.get(var, "").isdigit()}


def _port(requested: int | None, recorded: int | None) -> int | None:
    """The requested port, else the recorded one when still free, else None (a free one)."""
    if requested is not None:
        return requested
    return recorded if recorded is not None and port_is_free(recorded) else None


def _timed(name: str, start: Callable[[], object], describe: Callable[[object], str], log: Callable[[str], None]):
    log(f"{name:<11} starting ...")
    began = time.monotonic()
    service = start()
    log(f"{name:<11} up    {describe(service)}  [{time.monotonic() - began:.1f} s]")
    return service


def start_all(state: Path = DEFAULT_STATE, postgres_port: int | None = None, s3_port: int | None = None,
              clickhouse_port: int | None = None, log: Callable[[str], None] = print) -> Stack:
    """Start PostgreSQL, SeaweedFS and the ClickHouse endpoint under ``state`` (ports: given, else the
    ones recorded there when free, else free ones) and write the files described in the module
    docstring. Already-running services are reused. Raises StackError naming the failing service."""
    state = Path(state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o711)  # the postgres OS user must reach its cluster folder; nobody may list the secrets
    recorded = _recorded_ports(state)
    pg = _timed("postgres", lambda: start_postgres(state / "postgres", _port(postgres_port, recorded.get("postgres"))),
                lambda p: f"{p.host}:{p.port}  databases {', '.join(p.databases)}, role {p.user}", log)
    s3 = _timed("seaweedfs", lambda: start_seaweedfs(state / "seaweedfs", _port(s3_port, recorded.get("seaweedfs")),
                                                     buckets=(LAKE_BUCKET,), object_lock_buckets=(RAW_BUCKET, LINEAGE_BUCKET)),
                lambda s: f"{s.endpoint}  buckets {LAKE_BUCKET}, {RAW_BUCKET} and {LINEAGE_BUCKET} (Object Lock)", log)
    ch = _timed("clickhouse", lambda: start_clickhouse_endpoint(state / "clickhouse",
                                                                _port(clickhouse_port, recorded.get("clickhouse"))),
                lambda c: f"{c.url}  chDB endpoint (local stand-in for a ClickHouse server), user {c.user}", log)
    _secure_registry(pg, log)
    _clickhouse_tenant_access(ch, log)
    _protect_lineage_bucket(s3, log)
    stack = Stack(pg, s3, ch, state)
    (state / "ports.env").write_text("# written by `make stack-up` (infra/stack); every service listens on "
                                     f"{HOST} only\n" + "".join(f"{PORT_VARS[n]}={p}\n" for n, p in
                                                                 (("postgres", pg.port), ("seaweedfs", int(s3.endpoint.rsplit(":", 1)[1])),
                                                                  ("clickhouse", ch.port))))
    stack.config_path.write_text("# written by `make stack-up`: trialsynth on the local stack (secrets come from "
                                 "the env vars named here; `source .stack/stack.env`)\n"
                                 + yaml.safe_dump(stack.settings(), sort_keys=False))
    # DAGSTER_HOME too, for shells (`make ui` keeps an exported one): Dagster's convention wins over the settings.
    _secret_file(stack.env_path, "".join(f"export {k}='{v}'\n" for k, v in
                                         {**stack.environment(), "DAGSTER_HOME": str(stack.dagster_home)}.items()))
    _secret_file(state / "pgpass", "".join(f"{pg.host}:{pg.port}:{db}:{pg.user}:{pg.password}\n" for db in pg.databases)
                 + f"{pg.host}:{pg.port}:registry:{APP_ROLE}:{pg.app_password}\n")
    log(f"settings    {stack.config_path}; run trialsynth on the stack with `source {stack.env_path}`")
    return stack


def _protect_lineage_bucket(s3: SeaweedFS, log: Callable[[str], None]) -> None:
    """Refuse deletes of lineage and raw-zone objects by bucket policy (Object Lock already refuses deleting
    a locked version; this also refuses the delete markers a plain DELETE would add)."""
    from trialsynth.lineage.backends import protect_bucket

    for bucket, prefix in ((LINEAGE_BUCKET, "lineage/"), (RAW_BUCKET, "raw/")):
        protect_bucket(s3.client(), bucket, prefix)
        log(f"seaweedfs   {bucket}: bucket policy refuses deletes under {prefix}")


def _secure_registry(pg: Postgres, log: Callable[[str], None]) -> None:
    """Row-level security on the registry's tables, used through the non-owner APP_ROLE (idempotent)."""
    from sqlalchemy import create_engine

    from trialsynth.registry import metadata, upgrade_schema
    from trialsynth.tenancy import REGISTRY_TENANT_TABLES, apply_row_level_security

    admin = create_engine(pg.superuser_url("registry"))
    upgrade_schema(admin)  # a registry from before artifact URIs and encryption: upgraded as the owner
    admin.dispose()
    report = apply_row_level_security(pg.superuser_url("registry"), REGISTRY_TENANT_TABLES, metadata=metadata,
                                      app_role=APP_ROLE, app_password=pg.app_password)
    log(f"registry    row-level security on {', '.join(report.tenant_tables)}; the product connects as {APP_ROLE}")
    from trialsynth.api.store import secure_store  # the API's tables live in the same database

    report = secure_store(pg.superuser_url("registry"), app_role=APP_ROLE)
    log(f"api store   row-level security on {', '.join(report.tenant_tables)} (database registry)")


def _clickhouse_tenant_access(ch: ClickHouseEndpoint, log: Callable[[str], None]) -> None:
    """Per-tenant ClickHouse users for ``security.tenants`` (infra/clickhouse/tenant_access.sql)."""
    import clickhouse_connect

    from trialsynth.settings import get_settings
    from trialsynth.tenancy.clickhouse import AccessManagementUnavailable, apply_tenant_access

    tenants = get_settings().security.tenants
    if not tenants:
        log("clickhouse  no tenants in security.tenants: no per-tenant ClickHouse users")
        return
    path = ch.directory / "tenant_passwords.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    passwords = {t: saved.get(t) or secrets.token_urlsafe(18) for t in tenants}
    client = clickhouse_connect.get_client(host=ch.host, port=ch.port, username=ch.user, password=ch.password)
    try:
        users = apply_tenant_access(client, passwords, CLICKHOUSE_DATABASE)
    except AccessManagementUnavailable as exc:
        log(f"clickhouse  per-tenant users skipped: {exc}")
        return
    finally:
        client.close()
    _secret_file(path, json.dumps(passwords))
    log(f"clickhouse  tenant users {', '.join(users)} (row policy tenant_id = <tenant>); passwords in {path}")


def stop_all(state: Path = DEFAULT_STATE, log: Callable[[str], None] = print) -> dict[str, bool]:
    """Stop what :func:`start_all` started under ``state`` (and nothing else); which were running."""
    state = Path(state).resolve()
    stops = {"clickhouse": stop_clickhouse_endpoint, "seaweedfs": stop_seaweedfs, "postgres": stop_postgres}
    with ThreadPoolExecutor(len(stops)) as pool:  # independent services: stop them together
        futures = {name: pool.submit(stop, state / name) for name, stop in stops.items()}
        stopped = {name: future.result() for name, future in futures.items()}
    for name, was_running in stopped.items():
        log(f"{name:<11} {'stopped' if was_running else 'was not running'}")
    return stopped


def status(state: Path = DEFAULT_STATE) -> dict[str, str]:
    """One line per service: ``up <address>`` or ``down``, from the state folder."""
    state = Path(state).resolve()
    ports = _recorded_ports(state)
    pg = running_port(state / "postgres" / "data")
    lines = {"postgres": f"up    {HOST}:{pg}" if pg else "down"}
    for name, pid_file in (("seaweedfs", state / "seaweedfs" / "weed.pid"),
                           ("clickhouse", state / "clickhouse" / "endpoint.pid")):
        up = running_pid(pid_file, str(pid_file.parent)) is not None
        lines[name] = f"up    http://{HOST}:{ports.get(name)}" if up else "down"
    return lines

