"""Per-tenant routing of Superset's connections to the marts (issue 12, "Serving (Superset)").

Superset has one database, ``trialsynth_marts``, for every tenant's dashboards. Row-level security
filters what a chart asks for; this module also bounds what *any* SQL can reach (SQL Lab, a virtual
dataset's custom SQL, explore): every engine Superset builds is built for the authenticated user,
and :func:`mutate_connection` (``DB_CONNECTION_MUTATOR`` in ``superset_config.py``; Superset 6.1 calls
it in ``Database._get_sqla_engine`` for every engine, with ``username`` = ``g.user.username``) points
it at a store that physically holds only that user's tenant:

* a user holding exactly one tenant role of ``superset_config/rls_rules.yaml`` reads that tenant's
  store: on DuckDB its serving file ``<serving dir>/tenants/<tenant>.duckdb`` (published by
  :func:`publish_tenant_files`, ``WHERE tenant_id = <tenant>``), opened read-only with external
  access off whatever the database's stored URI says; on ClickHouse the tenant's login ``ts_<tenant>``
  (``infra/clickhouse/tenant_access.sql``: row policy ``tenant_id = <tenant>``) with its password from
  the JSON file named by ``$TRIALSYNTH_CLICKHOUSE_TENANT_PASSWORDS`` (``make stack-up`` writes it).
  Without tenant logins (the chDB stand-in admits none) tenant users are refused, unless
  ``$TRIALSYNTH_SUPERSET_CLICKHOUSE_RLS_ONLY=1`` says to serve them through the shared login with
  Superset's RLS only (the weaker pre-issue-12 isolation, logged at every connect);
* a user holding the Admin role reads the all-tenant store (the URI as stored);
* anyone else — no tenant role, two tenants' roles, no authenticated user, a tenant without a store,
  a backend without per-tenant stores — is refused (:class:`RoutingRefused`), never given the
  shared store.

The tenant comes only from the roles of the authenticated user Superset passes in, never from the
request. Results cache: Superset's chart-data cache key holds the datasource, the query and the
user's RLS clauses, not who asked; :func:`security_manager_class` adds the routed store to it, so a
result computed on one tenant's (or the admin's) store is never served to another tenant, also for a
virtual dataset without RLS filters; and it opens a SQL Lab result stored under its key to the
query's owner (and Admins) only.

Run ``python -m infra.superset.tenant_routing --warehouse W --serving S`` (``run_superset.sh`` does,
after publishing the all-tenant file S) to publish one serving file per tenant of the rules.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine.url import URL

from infra.superset.provision import RULES_PATH, Rules, load_rules

TENANTS_FOLDER = "tenants"  # trialsynth.tenancy.serving.tenant_serving_path's layout (a test keeps them equal)
CLICKHOUSE_USER_PREFIX = "ts_"  # trialsynth.tenancy.clickhouse.USER_PREFIX (a test keeps them equal)
PASSWORDS_ENV = "TRIALSYNTH_CLICKHOUSE_TENANT_PASSWORDS"
RLS_ONLY_ENV = "TRIALSYNTH_SUPERSET_CLICKHOUSE_RLS_ONLY"  # "1": tenants share the ClickHouse login (RLS only)
_log = logging.getLogger(__name__)
# Forced on every tenant DuckDB connection (duckdb_engine passes URL query parameters to duckdb.connect):
# the file cannot be written, and SQL on it cannot ATTACH, read or write any other file.
DUCKDB_LOCKDOWN = {"access_mode": "read_only", "enable_external_access": "false",
                   "autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
ALL_TENANTS = "*all tenants*"  # the route of an Admin: the store as stored in Superset


class RoutingRefused(PermissionError):
    """This user may not read through this connection (no or several tenant roles, no store)."""


def tenant_file(serving: Path, tenant: str) -> Path:
    """The tenant's serving file beside the all-tenant file ``serving``: ``<dir>/tenants/<tenant>.duckdb``."""
    return Path(serving).parent / TENANTS_FOLDER / f"{tenant}.duckdb"


def route_for(username: str | None, roles: Iterable[str], rules: Rules, admin_role: str = "Admin") -> str:
    """The store a user reads: :data:`ALL_TENANTS` for ``admin_role``, else its one tenant.

    Raises RoutingRefused (naming the user and its tenant roles) for no user, no tenant role or
    several tenants' roles."""
    if not username:
        raise RoutingRefused("no authenticated user: Superset connects to the marts only on behalf of a user")
    roles = set(roles)
    if admin_role in roles:
        return ALL_TENANTS
    tenants = sorted({t.tenant for t in rules.tenants if t.role in roles})
    if len(tenants) != 1:
        why = "no tenant role" if not tenants else f"roles of several tenants ({', '.join(tenants)})"
        raise RoutingRefused(f"user {username!r} has {why}: a user reads the marts of exactly one tenant "
                             f"(one role of superset_config/rls_rules.yaml) or is an {admin_role}")
    return tenants[0]


def tenant_passwords(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Tenant -> ClickHouse password from the JSON file named by ``$TRIALSYNTH_CLICKHOUSE_TENANT_PASSWORDS``."""
    path = env.get(PASSWORDS_ENV)
    if not path:
        raise RoutingRefused(f"${PASSWORDS_ENV} is not set: no ClickHouse login of any tenant is known "
                             "(make stack-up writes clickhouse/tenant_passwords.json)")
    return json.loads(Path(path).read_text())


def routed_url(url: URL, route: str, passwords: Mapping[str, str] | None = None) -> URL:
    """``url`` (the database's stored URI) rewritten for ``route`` (see :func:`route_for`).

    DuckDB: the tenant's serving file with :data:`DUCKDB_LOCKDOWN`; ClickHouse (``clickhousedb``):
    the tenant's login, same server and database. Raises RoutingRefused for a tenant without a file
    or password, and for any other backend."""
    if route == ALL_TENANTS:
        return url
    backend = url.get_backend_name()
    if backend == "duckdb":
        path = tenant_file(Path(url.database or ":memory:"), route)
        if not path.is_file():
            raise RoutingRefused(f"tenant {route!r} has no serving file {path}: run_superset.sh publishes one "
                                 "per tenant of superset_config/rls_rules.yaml")
        return url.set(database=str(path), query={**url.query, **DUCKDB_LOCKDOWN})
    if backend == "clickhousedb":
        if passwords is None and os.environ.get(RLS_ONLY_ENV) == "1":
            _log.warning("tenant %s reads ClickHouse through the shared login, isolated by Superset's RLS only "
                         "($%s=1: this ClickHouse has no tenant logins)", route, RLS_ONLY_ENV)
            return url
        password = (passwords if passwords is not None else tenant_passwords()).get(route)
        if not password:
            raise RoutingRefused(f"no ClickHouse password for tenant {route!r} in ${PASSWORDS_ENV}")
        return url.set(username=f"{CLICKHOUSE_USER_PREFIX}{route}", password=password)
    raise RoutingRefused(f"a {backend} database has no per-tenant store: only an Admin may query it")


@functools.lru_cache(maxsize=4)
def _rules(path: Path, mtime_ns: int) -> Rules:
    return load_rules(path)


def user_route(username: str | None, security_manager: Any) -> str:
    """:func:`route_for` of the Superset user ``username`` (its roles from Superset's metadata DB;
    the rules file is re-read when it changes)."""
    user = security_manager.find_user(username=username) if username else None
    if username and user is None:
        raise RoutingRefused(f"user {username!r} is not a Superset user")
    return route_for(username, [r.name for r in user.roles] if user else [],
                     _rules(RULES_PATH, RULES_PATH.stat().st_mtime_ns), security_manager.auth_role_admin)


def mutate_connection(url: URL, params: dict[str, Any], username: str | None, security_manager: Any,
                      source: Any = None) -> tuple[URL, dict[str, Any]]:
    """Superset's ``DB_CONNECTION_MUTATOR``: (url, engine params) of the user's store; refusals are
    raised as Superset's security exception, so SQL Lab and the chart-data API show the message."""
    try:
        return routed_url(url, user_route(username, security_manager)), params
    except RoutingRefused as exc:
        from superset.errors import ErrorLevel, SupersetError, SupersetErrorType
        from superset.exceptions import SupersetSecurityException

        raise SupersetSecurityException(SupersetError(
            message=f"Refused by tenant routing: {exc}", error_type=SupersetErrorType.DATABASE_SECURITY_ACCESS_ERROR,
            level=ErrorLevel.ERROR)) from exc


def security_manager_class() -> type:
    """``CUSTOM_SECURITY_MANAGER``: Superset's, with two changes that keep results inside the store
    they were read from: the routed store is part of every chart-data cache key, and a SQL Lab query
    (its stored result, its CSV export) is open to its owner and Admins only — Superset 6.1 lets
    anyone with access to the query's tables fetch a stored result by its key."""
    from flask import g
    from superset.errors import ErrorLevel, SupersetError, SupersetErrorType
    from superset.exceptions import SupersetSecurityException
    from superset.security import SupersetSecurityManager
    from superset.utils.core import get_user_id

    class TenantRoutedSecurityManager(SupersetSecurityManager):
        def get_rls_cache_key(self, datasource: Any) -> list[str]:
            username = getattr(getattr(g, "user", None), "username", None)
            try:
                store = user_route(username, self)
            except RoutingRefused:
                store = f"refused:{username}"  # the query itself is refused; never share its key
            return [*super().get_rls_cache_key(datasource), f"store={store}"]

        def raise_for_access(self, *args: Any, **kwargs: Any) -> None:
            from superset.models.sql_lab import Query  # models need the initialised app

            query = kwargs.get("query")
            if isinstance(query, Query) and query.user_id != get_user_id() and not self.is_admin():
                raise SupersetSecurityException(SupersetError(
                    message="This SQL Lab query belongs to another user", level=ErrorLevel.ERROR,
                    error_type=SupersetErrorType.QUERY_SECURITY_ACCESS_ERROR))
            super().raise_for_access(*args, **kwargs)

    return TenantRoutedSecurityManager


def publish_tenant_files(warehouse: Path, serving: Path, rules: Rules) -> dict[str, Any]:
    """Publish :func:`tenant_file` of every tenant of ``rules`` from ``warehouse``; report per tenant."""
    from infra.superset.publish import publish

    return {t.tenant: publish(warehouse, tenant_file(serving, t.tenant), tenant=t.tenant) for t in rules.tenants}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Publish one serving DuckDB file per tenant of the RLS rules.")
    p.add_argument("--warehouse", type=Path, required=True)
    p.add_argument("--serving", type=Path, required=True, help="the all-tenant serving file; tenants' go beside it")
    p.add_argument("--rules", type=Path, default=RULES_PATH)
    args = p.parse_args(argv)
    for tenant, report in publish_tenant_files(args.warehouse, args.serving, load_rules(args.rules)).items():
        print(f"tenant {tenant}: {sum(report.copied.values()):,} rows in {len(report.copied)} marts "
              f"-> {report.serving_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
