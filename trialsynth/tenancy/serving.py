"""Per-tenant serving files: each tenant's dashboards read a DuckDB file that holds only its rows.

Row-level security in Superset filters what a *chart* asks for; a tenant's own serving file also
bounds what any SQL can reach (SQL Lab, a dataset's custom SQL, a driver bug): the other tenants'
rows are not in it. The file is opened read-only with ``enable_external_access=false``
(:func:`infra.superset.bundle.serving_uri`), so SQL run on it cannot ATTACH or read another file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb

from infra.superset.publish import PublishReport, publish
from trialsynth.names import validate_name


def tenant_serving_path(serving_dir: Path, tenant: str) -> Path:
    """``<serving_dir>/tenants/<tenant>.duckdb``."""
    return Path(serving_dir) / "tenants" / f"{validate_name(tenant, 'tenant')}.duckdb"


def warehouse_tenants(warehouse: Path) -> list[str]:
    """Distinct ``tenant_id`` of the warehouse's ``mart_*`` tables (sorted; [] when it does not exist)."""
    if not Path(warehouse).exists():
        return []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        marts = con.execute(
            "SELECT DISTINCT table_schema, table_name FROM information_schema.columns "
            "WHERE starts_with(table_name, 'mart_') AND column_name = 'tenant_id'").fetchall()
        found: set[str] = set()
        for schema, table in marts:
            found.update(r[0] for r in con.execute(f'SELECT DISTINCT tenant_id FROM "{schema}"."{table}"').fetchall()
                         if r[0] is not None)
    return sorted(found)


def publish_tenants(warehouse: Path, serving_dir: Path, tenants: Iterable[str] | None = None,
                    **kwargs) -> dict[str, PublishReport]:
    """One serving file per tenant (default: every tenant in the warehouse's marts); ``kwargs`` go to
    :func:`infra.superset.publish.publish`."""
    names = list(tenants) if tenants is not None else warehouse_tenants(warehouse)
    return {t: publish(warehouse, tenant_serving_path(serving_dir, t), tenant=validate_name(t, "tenant"), **kwargs)
            for t in names}
