"""Per-tenant ClickHouse roles, users and row policies (SQL: ``infra/clickhouse/tenant_access.sql``).

Each tenant gets a role allowed to SELECT the warehouse database and nothing else, a row policy
``USING tenant_id = '<tenant>'`` on every table of that database, and a login (``ts_<tenant>``) with
that role only, ``readonly = 2`` (no writes, no DDL) fixed. Dashboards of a tenant connect as that
login, so even a hand-written query without ``WHERE tenant_id`` returns only the tenant's rows.

What was checked where (see docs/security.md): the rendered SQL parses on ClickHouse 26.9 (chDB's
``formatQuery``); the *enforcement* — grants and the row-policy condition — runs on chDB's engine
through its users.xml form (:func:`users_xml`; the only access storage an embedded chDB has).
The SQL statements themselves (``CREATE USER/ROLE/ROW POLICY``) need a server with a writable
access storage: :func:`apply_tenant_access` runs them and says so when the server cannot.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from trialsynth.names import validate_name

SQL_PATH = Path(__file__).resolve().parents[2] / "infra" / "clickhouse" / "tenant_access.sql"
USER_PREFIX = "ts_"
_STATEMENT_END = re.compile(r";\s*(?:\n|\Z)")


class AccessManagementUnavailable(RuntimeError):
    """The server cannot store SQL-created users (e.g. the chDB stand-in)."""


@dataclass(frozen=True)
class TenantAccess:
    """The names one tenant's access uses in ClickHouse."""

    tenant: str
    database: str

    @property
    def user(self) -> str:
        return f"{USER_PREFIX}{self.tenant}"

    @property
    def role(self) -> str:
        return f"ts_tenant_{self.tenant}"

    @property
    def policy(self) -> str:
        return f"ts_tenant_{self.tenant}_rows"

    @property
    def serving_database(self) -> str:
        """Where Superset's views live: as infra.superset.warehouse.ServedWarehouse.serving_database."""
        return f"{self.database}_serving"

    @property
    def serving_policy(self) -> str:
        return f"ts_tenant_{self.tenant}_serving_rows"

    @property
    def condition(self) -> str:
        """The row policy's condition (also the users.xml filter)."""
        return f"tenant_id = {_literal(self.tenant)}"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def password_sha256(password: str) -> str:
    if not password:
        raise ValueError("password must be non-empty")
    return hashlib.sha256(password.encode()).hexdigest()


def render_tenant_access(tenant: str, password: str, database: str = "trialsynth", template: Path = SQL_PATH) -> list[str]:
    """The statements of ``tenant_access.sql`` for one tenant, in order (comments dropped)."""
    access = TenantAccess(validate_name(tenant, "tenant"), validate_name(database, "database"))
    body = "\n".join(line for line in Path(template).read_text().splitlines() if not line.lstrip().startswith("--"))
    sql = body.format(database=_identifier(access.database), serving_database=_identifier(access.serving_database),
                      role=_identifier(access.role), user=_identifier(access.user), policy=_identifier(access.policy),
                      serving_policy=_identifier(access.serving_policy),
                      tenant=_literal(access.tenant), password_sha256=password_sha256(password))
    return [s.strip() for s in _STATEMENT_END.split(sql) if s.strip()]


def users_xml(tenant: str, database: str, tables: Iterable[str]) -> str:
    """users.xml making the *default* user of an embedded chDB behave as the tenant's role: SELECT on
    ``database`` only, ``readonly = 2``, and the same row condition on each of ``tables`` (users.xml
    filters are per table; the SQL policy covers ``database.*``). Used to run the enforcement on the
    ClickHouse engine where no second login exists (chDB always runs as ``default``)."""
    access = TenantAccess(validate_name(tenant, "tenant"), validate_name(database, "database"))
    filters = "".join(f"<{escape(t)}><filter>{escape(access.condition)}</filter></{escape(t)}>" for t in tables)
    return ("<clickhouse><profiles><default/><tenant><readonly>2</readonly></tenant></profiles>"
            "<users><default><password/><networks><ip>::/0</ip></networks><profile>tenant</profile>"
            "<quota>default</quota>"
            f"<grants><query>GRANT SELECT ON {_identifier(access.database)}.*</query></grants>"
            f"<databases><{escape(access.database)}>{filters}</{escape(access.database)}></databases>"
            "</default></users><quotas><default/></quotas></clickhouse>")


def apply_tenant_access(client, tenants: dict[str, str], database: str = "trialsynth") -> list[str]:
    """Run the rendered statements for each ``tenant -> password`` through ``client`` (a
    clickhouse-connect client of an admin with access_management); returns the users made.

    Raises AccessManagementUnavailable when the server cannot store users (ClickHouse code 514,
    ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND, or 497 ACCESS_DENIED for the first statement), having
    changed nothing.
    """
    users = []
    for tenant, password in sorted(tenants.items()):
        for i, statement in enumerate(render_tenant_access(tenant, password, database)):
            try:
                client.command(statement)
            except Exception as exc:  # clickhouse-connect's DatabaseError carries the server's code in its text
                if i == 0 and re.search(r"Code: (514|497)\b", str(exc)):
                    reason = re.search(r"Code: \d+\. DB::Exception: .*?\(\w+\)", str(exc))
                    raise AccessManagementUnavailable(
                        f"the ClickHouse server cannot create tenant roles and users "
                        f"({reason.group(0) if reason else str(exc).strip()[:300]}): "
                        "per-tenant users need a server with a writable access storage (local_directory) and an "
                        "admin with access_management") from exc
                raise
        users.append(TenantAccess(tenant, database).user)
    return users
