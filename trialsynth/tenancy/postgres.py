"""Postgres row-level security for the product's tenant tables, and the guard that feeds it.

Two halves, deliberately apart:

* :func:`apply_row_level_security` — run by an administrator (a superuser, or a role with CREATEROLE
  that is a member of the owner role) when the database is set up (``make stack-up`` does it for the
  registry). Idempotent. For each tenant table it

  - hands the table to the **owner role** (NOLOGIN: nobody connects as it),
  - adds the tenant column when the table lacks it (``tenant_id varchar(64)``), with the default
    ``NULLIF(current_setting('app.current_tenant', true), '')`` so code that does not name the column
    still writes the transaction's tenant, and makes it NOT NULL,
  - turns on ``ENABLE`` **and** ``FORCE ROW LEVEL SECURITY`` (FORCE: the owner is bound too),
  - (re)creates the policy ``tenant_isolation`` ``FOR ALL ... USING (<col> =
    NULLIF(current_setting('app.current_tenant', true), '')) WITH CHECK (same)``: a row is visible, updatable
    and deletable only by a transaction of its tenant, and no transaction can write a row of another
    tenant (INSERT, or UPDATE moving a row to another tenant, fail with "new row violates row-level
    security policy"),
  - grants SELECT, INSERT, UPDATE, DELETE (and its serial sequences) to the **application role**:
    LOGIN, NOSUPERUSER, NOBYPASSRLS, NOCREATEROLE, NOCREATEDB, not a member of the owner role. It
    cannot ALTER, DROP, DISABLE/NO FORCE row-level security, drop the policy or ``SET ROLE`` to the
    owner.

  Tables without tenant data (``shared_tables``, e.g. the API's power-curve cache keyed by the
  request hash) get the same owner and grants but no policy.

* :func:`install_tenant_guard` — the one place the tenant reaches Postgres: a SQLAlchemy ``begin``
  event that runs ``SELECT set_config('app.current_tenant', <tenant>, true)`` (= ``SET LOCAL``, bound
  as a parameter) at the start of **every** transaction of the engine, ORM sessions included. The
  tenant comes from :func:`trialsynth.tenancy.tenant_scope` (or is fixed when the engine is made).
  Outside any scope it sets ``''``, which the policy turns into NULL (``NULLIF``), matching no
  row: a forgotten scope sees nothing and can write nothing (not even rows with an empty tenant), and a session-level ``SET app.current_tenant`` left on a pooled connection is
  overridden inside every transaction.

What this does **not** protect against: ``app.current_tenant`` is a plain setting, so code that can
send arbitrary SQL as the application role (SQL injection) can ``SET LOCAL`` another tenant. RLS here
makes a query that forgets ``WHERE tenant``, a wrong id from another tenant, or a bug in a filter
return nothing of another tenant; parameterised queries remain the defence against injection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text

from trialsynth.names import validate_name
from trialsynth.tenancy.context import TenantContextError, current_tenant

TENANT_SETTING = "app.current_tenant"
POLICY_NAME = "tenant_isolation"
DEFAULT_OWNER_ROLE = "trialsynth_owner"
DEFAULT_APP_ROLE = "trialsynth_app"

REGISTRY_TENANT_TABLES: dict[str, str] = {"models": "tenant_id", "status_changes": "tenant_id",
                                          "privacy_spend": "tenant_id"}
"""The model registry's tables (trialsynth/registry.py) and their tenant column (added here)."""
API_TENANT_TABLES: dict[str, str] = {"api_jobs": "tenant", "api_idempotency_keys": "tenant", "api_usage": "tenant",
                                      "api_uploads": "tenant"}
"""The API's tenant tables (trialsynth/api/store.py) and the column they already carry."""
API_SHARED_TABLES: tuple[str, ...] = ("api_power_cache",)
"""API tables without tenant data (power curves keyed by the request's hash)."""

CURRENT_TENANT_SQL = f"NULLIF(current_setting('{TENANT_SETTING}', true), '')"
"""The transaction's tenant in SQL; NULL (matches nothing) when unset or empty."""
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
_SET_TENANT = text(f"SELECT set_config('{TENANT_SETTING}', :tenant, true)")
_GUARD_ATTR = "_trialsynth_tenant_guard"


def tenant_predicate(column: str) -> str:
    """The policy's condition for a table whose tenant column is ``column``."""
    return f"{_ident(column, 'tenant column')} = {CURRENT_TENANT_SQL}"


@dataclass
class RlsReport:
    """What :func:`apply_row_level_security` put in place."""

    owner_role: str
    app_role: str
    tenant_tables: dict[str, str]  # table -> tenant column, each with FORCE RLS and the policy
    shared_tables: list[str] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)  # "table.column" added by this run
    backfilled: dict[str, int] = field(default_factory=dict)  # table -> rows given backfill_tenant

    def lines(self) -> list[str]:
        out = [f"row-level security: owner {self.owner_role}, application role {self.app_role} (NOBYPASSRLS)"]
        out += [f"  {t}: FORCE ROW LEVEL SECURITY, policy {POLICY_NAME} on {c}" for t, c in self.tenant_tables.items()]
        out += [f"  {t}: no tenant data, no policy" for t in self.shared_tables]
        out += [f"  added column {c}" for c in self.added_columns]
        out += [f"  {t}: {n} existing rows assigned to the backfill tenant" for t, n in self.backfilled.items()]
        return out


def _ident(name: str, what: str) -> str:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"{what} {name!r} must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63)")
    return f'"{name}"'


def apply_row_level_security(
    admin: Engine | str,
    tenant_tables: Mapping[str, str],
    *,
    metadata: MetaData | None = None,
    shared_tables: Iterable[str] = (),
    owner_role: str = DEFAULT_OWNER_ROLE,
    app_role: str = DEFAULT_APP_ROLE,
    app_password: str | None = None,
    backfill_tenant: str | None = None,
) -> RlsReport:
    """Put row-level security on ``tenant_tables`` (table -> tenant column) in the database ``admin``
    connects to, in one transaction; idempotent (run it after every schema change).

    ``admin``: an Engine or SQLAlchemy URL of a superuser (or CREATEROLE member of ``owner_role``).
    ``metadata``: when given, its tables among ``tenant_tables``/``shared_tables`` are created first
    if missing (e.g. ``trialsynth.registry.metadata``, ``trialsynth.api.store.metadata``).
    ``app_password``: sets the application role's password (None: leave it as it is; a new role
    without password cannot log in until one is set). ``backfill_tenant``: tenant given to existing
    rows whose tenant column is NULL (a table from before tenancy); without it such rows make this
    raise ValueError naming the table, since a row without tenant would be visible to no one.
    """
    owner, app = _ident(owner_role, "owner role"), _ident(app_role, "application role")
    tables = {t: c for t, c in tenant_tables.items()}
    shared = list(shared_tables)
    for name in [*tables, *tables.values(), *shared]:
        _ident(name, "table/column")
    if backfill_tenant is not None:
        validate_name(backfill_tenant, "backfill tenant")
    engine = create_engine(admin) if isinstance(admin, str) else admin
    report = RlsReport(owner_role, app_role, tables, shared)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('trialsynth.tenancy.rls'))"))
        _ensure_roles(conn, owner, app, owner_role, app_role, app_password)
        if metadata is not None:
            wanted = [metadata.tables[t] for t in [*tables, *shared] if t in metadata.tables]
            metadata.create_all(conn, tables=wanted)
        database = conn.execute(text("SELECT current_database()")).scalar_one()
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO {app}'))
        conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {app}"))
        for table, column in tables.items():
            _secure_table(conn, table, column, owner, app, report, backfill_tenant)
        for table in shared:
            _hand_over(conn, _ident(table, "table"), table, owner, app)
    _verify(engine, report)
    return report


def _ensure_roles(conn: Connection, owner: str, app: str, owner_name: str, app_name: str, password: str | None) -> None:
    existing = set(conn.execute(text("SELECT rolname FROM pg_roles WHERE rolname IN (:o, :a)"),
                                {"o": owner_name, "a": app_name}).scalars())
    attributes = "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION"
    conn.execute(text(f"{'ALTER' if owner_name in existing else 'CREATE'} ROLE {owner} NOLOGIN {attributes}"))
    conn.execute(text(f"{'ALTER' if app_name in existing else 'CREATE'} ROLE {app} LOGIN NOINHERIT {attributes}"))
    if password is not None:
        # ALTER ROLE takes no bind parameters; the password is quoted by the server's quote_literal.
        quoted = conn.execute(text("SELECT quote_literal(:p)"), {"p": password}).scalar_one()
        conn.execute(text(f"ALTER ROLE {app} PASSWORD {quoted}"))
    member = conn.execute(text("SELECT pg_has_role(:a, :o, 'MEMBER')"), {"a": app_name, "o": owner_name}).scalar_one()
    if member:
        conn.execute(text(f"REVOKE {owner} FROM {app}"))


def _secure_table(conn: Connection, table: str, column: str, owner: str, app: str, report: RlsReport,
                  backfill_tenant: str | None) -> None:
    t, c = _ident(table, "table"), _ident(column, "tenant column")
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": f"public.{table}"}).scalar() is None:
        raise ValueError(f"table {table} does not exist in this database: create it first (pass its metadata)")
    has_column = conn.execute(text(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' AND table_name = :t "
        "AND column_name = :c"), {"t": table, "c": column}).first()
    if has_column is None:
        conn.execute(text(f"ALTER TABLE {t} ADD COLUMN {c} varchar(64)"))
        report.added_columns.append(f"{table}.{column}")
    conn.execute(text(f"ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT {CURRENT_TENANT_SQL}"))
    if backfill_tenant is not None:
        done = conn.execute(text(f"UPDATE {t} SET {c} = :b WHERE {c} IS NULL"), {"b": backfill_tenant}).rowcount
        if done:
            report.backfilled[table] = done
    orphans = conn.execute(text(f"SELECT count(*) FROM {t} WHERE {c} IS NULL")).scalar_one()
    if orphans:
        raise ValueError(f"table {table}: {orphans} rows have no {column}; they would be visible to no tenant. "
                         "Pass backfill_tenant='<tenant>' to assign them, or delete them")
    conn.execute(text(f"ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL"))
    _hand_over(conn, t, table, owner, app)
    conn.execute(text(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY"))
    conn.execute(text(f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY"))
    conn.execute(text(f"DROP POLICY IF EXISTS {POLICY_NAME} ON {t}"))
    predicate = tenant_predicate(column)
    conn.execute(text(f"CREATE POLICY {POLICY_NAME} ON {t} AS PERMISSIVE FOR ALL TO PUBLIC "
                      f"USING ({predicate}) WITH CHECK ({predicate})"))
    conn.execute(text(f'CREATE INDEX IF NOT EXISTS "ix_{table[:40]}_{column[:16]}_rls" ON {t} ({c})'))


def _hand_over(conn: Connection, quoted: str, table: str, owner: str, app: str) -> None:
    """Owner role owns the table (and its serial sequences); the app role may only read and write rows."""
    conn.execute(text(f"ALTER TABLE {quoted} OWNER TO {owner}"))
    conn.execute(text(f"REVOKE ALL ON {quoted} FROM PUBLIC"))
    conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {quoted} TO {app}"))
    sequences = conn.execute(text(
        "SELECT s.oid::regclass::text FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
        "WHERE s.relkind = 'S' AND d.deptype IN ('a', 'i') AND d.refobjid = CAST(:t AS regclass)"),
        {"t": f"public.{table}"}).scalars().all()
    for sequence in sequences:
        conn.execute(text(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {app}"))


def _verify(engine: Engine, report: RlsReport) -> None:
    """Read the catalog back: every promise of the report holds, else RuntimeError naming it."""
    with engine.connect() as conn:
        role = conn.execute(text("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = :r"),
                            {"r": report.app_role}).one()
        if role.rolsuper or role.rolbypassrls:
            raise RuntimeError(f"application role {report.app_role} is superuser or BYPASSRLS: row-level security "
                               "would not apply to it")
        for table in report.tenant_tables:
            row = conn.execute(text(
                "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) AS owner, "
                "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = :p) AS policies "
                "FROM pg_class c WHERE c.oid = CAST(:t AS regclass)"), {"t": f"public.{table}", "p": POLICY_NAME}).one()
            if not (row.relrowsecurity and row.relforcerowsecurity and row.policies == 1
                    and row.owner == report.owner_role):
                raise RuntimeError(f"table {table}: row-level security is not in place ({dict(row._mapping)})")


def install_tenant_guard(engine: Engine, tenant: str | None = None) -> Engine:
    """Make every transaction of ``engine`` start with ``SET LOCAL app.current_tenant`` (see the module
    docstring); returns ``engine``. A no-op for other databases than Postgres (SQLite has no RLS).

    ``tenant``: fix the tenant for this engine (a Dagster run of one partition); a transaction begun
    inside a :func:`~trialsynth.tenancy.tenant_scope` of *another* tenant then raises
    TenantContextError. None: the tenant of the current scope, ``''`` (sees nothing) outside any.
    Installing again is a no-op (keeping the tenant fixed first); fixing another tenant is ValueError.

    The setting is transaction-local: a connection in autocommit mode keeps it for one statement
    only, so each of its statements runs without tenant (sees nothing).
    """
    if engine.dialect.name != "postgresql":
        return engine
    fixed = validate_name(tenant, "tenant") if tenant is not None else None
    if hasattr(engine, _GUARD_ATTR):
        if fixed is not None and getattr(engine, _GUARD_ATTR) != fixed:
            raise ValueError(f"engine already has a tenant guard for {getattr(engine, _GUARD_ATTR)!r}, not {fixed!r}")
        return engine

    def set_tenant(conn: Connection) -> None:
        scoped = current_tenant()
        if fixed is not None and scoped is not None and scoped != fixed:
            raise TenantContextError(f"this database engine is bound to tenant {fixed!r} but the code runs for "
                                     f"tenant {scoped!r}")
        conn.execute(_SET_TENANT, {"tenant": fixed or scoped or ""})

    event.listen(engine, "begin", set_tenant)
    setattr(engine, _GUARD_ATTR, fixed)
    return engine
