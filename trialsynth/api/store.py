"""The API's own tables (SQLAlchemy Core): jobs, idempotency keys, presigned uploads, the power cache,
daily usage.

Any SQLAlchemy URL (``api.store_url``): Postgres in the scale-out stack, SQLite under the lake
(``<lake>/api/api.sqlite``) in the embedded default. Every row that belongs to a tenant carries
``tenant`` and every query filters on it: the API never reads a row by id alone.

On Postgres the tenant tables also have row-level security (issue 12, :mod:`trialsynth.tenancy`): an
administrator runs :func:`secure_store` once (``make stack-up`` does), the API connects as the
non-owner application role, and the engine's tenant guard puts the request's tenant (the token's,
``tenant_scope`` in :func:`trialsynth.api.deps.principal`) into every transaction. The API refuses to
start on a Postgres store whose tenant tables lack FORCE ROW LEVEL SECURITY.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url

from trialsynth.settings import Settings
from trialsynth.tenancy.postgres import (
    API_SHARED_TABLES,
    API_TENANT_TABLES,
    DEFAULT_APP_ROLE,
    RlsReport,
    apply_row_level_security,
    install_tenant_guard,
)

metadata = MetaData()

jobs_table = Table(
    "api_jobs", metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("study", String(64)),
    Column("kind", String(16), nullable=False),  # train | generate | impute | simulate
    Column("status", String(16), nullable=False),  # queued | running | succeeded | failed | canceled
    Column("run_id", String(64)),
    Column("trace_id", String(32)),
    Column("request", JSON, nullable=False),
    Column("result", JSON),  # outputs once succeeded, the error once failed
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_api_jobs_tenant_status", "tenant", "status"),
)

idempotency_table = Table(
    "api_idempotency_keys", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # sha256 of method, path and canonical payload
    Column("state", String(16), nullable=False),  # in_flight | done | retryable
    Column("resource_id", String(32), nullable=False),  # the job (or drop) id, stable across retries
    Column("locked_until", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer),
    Column("response", Text),
    Column("headers", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

uploads_table = Table(
    "api_uploads", metadata,  # presigned S3 uploads of EDC drops (routers/ingest.py), until they land
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("study", String(64), nullable=False),
    Column("drop_id", String(64), nullable=False),
    Column("files", JSON, nullable=False),  # [{name, bytes, sha256}] as declared by the client
    Column("status", String(16), nullable=False),  # open | landed
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

power_cache_table = Table(
    "api_power_cache", metadata,
    Column("request_sha256", String(64), primary_key=True),
    Column("response", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

usage_table = Table(
    "api_usage", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("day", String(10), primary_key=True),  # UTC date
    Column("count", Integer, nullable=False),
)


def now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def store_url(settings: Settings) -> str:
    return settings.api.store_url or f"sqlite:///{settings.lake_dir / 'api' / 'api.sqlite'}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_store(settings: Settings) -> Engine:
    """Engine on the API store: SQLite with its tables created when missing; Postgres with the tenant
    guard, refused unless :func:`secure_store` was run on it."""
    url = make_url(store_url(settings))
    if url.get_backend_name() == "sqlite":
        if url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection, shared in turn: request threads queue on the pool (woken at once) instead of
        # meeting SQLITE_BUSY, whose retry handler sleeps milliseconds at a time. Postgres keeps a real pool.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 5}, pool_size=1,
                               max_overflow=0, pool_timeout=30)
        event.listen(engine, "connect", _sqlite_pragmas)
        metadata.create_all(engine)
        return engine
    engine = install_tenant_guard(create_engine(url, pool_pre_ping=True))
    _require_row_level_security(engine)
    return engine


def secure_store(admin_url: str, app_role: str = DEFAULT_APP_ROLE, app_password: str | None = None) -> RlsReport:
    """Create the API's tables in the Postgres database ``admin_url`` names (as its administrator) with
    row-level security on the tenant tables, used through ``app_role`` (idempotent)."""
    return apply_row_level_security(admin_url, API_TENANT_TABLES, metadata=metadata, shared_tables=API_SHARED_TABLES,
                                    app_role=app_role, app_password=app_password)


def _require_row_level_security(engine: Engine) -> None:
    with engine.connect() as conn:
        forced = dict(conn.execute(text("SELECT c.relname, c.relforcerowsecurity FROM pg_class c "
                                        "WHERE c.relname = ANY(:t) AND c.relkind = 'r' AND pg_table_is_visible(c.oid)"),
                                   {"t": list(API_TENANT_TABLES)}).all())
        bypass = conn.execute(text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")).scalar()
    if bypass:
        raise RuntimeError(f"API store {engine.url.render_as_string(hide_password=True)}: the API connects as a role "
                           f"that bypasses row-level security; connect as the application role ({DEFAULT_APP_ROLE})")
    missing = sorted(t for t in API_TENANT_TABLES if not forced.get(t))
    if missing:
        raise RuntimeError(f"API store {engine.url.render_as_string(hide_password=True)}: tables {', '.join(missing)} "
                           "are missing or lack FORCE ROW LEVEL SECURITY; as the database administrator run "
                           "trialsynth.api.store.secure_store(<admin url>) (make stack-up does), then connect "
                           f"the API as the application role ({DEFAULT_APP_ROLE})")
