"""Tenant isolation in every store (issue 12, "tenant isolation, proven"); see docs/security.md.

- :mod:`~trialsynth.tenancy.context`: *which* tenant the code acts for — set once by the caller
  (the API's authenticated principal, a Dagster run's partition) with :func:`tenant_scope`, never
  taken from request data.
- :mod:`~trialsynth.tenancy.postgres`: row-level security on the product's Postgres tables
  (:func:`apply_row_level_security`, run by an administrator) and the one SQLAlchemy event that puts
  the context's tenant into every transaction (:func:`install_tenant_guard`).
- :mod:`~trialsynth.tenancy.clickhouse`: per-tenant ClickHouse roles, users and row policies
  (SQL template ``infra/clickhouse/tenant_access.sql``).
- :mod:`~trialsynth.tenancy.lake`: lake and raw-zone paths checked to stay under the tenant's prefix.
"""

from trialsynth.tenancy.context import TenantContextError, current_tenant, require_tenant, tenant_scope
from trialsynth.tenancy.lake import TenantPathError, tenant_path
from trialsynth.tenancy.postgres import (
    API_SHARED_TABLES,
    API_TENANT_TABLES,
    REGISTRY_TENANT_TABLES,
    TENANT_SETTING,
    RlsReport,
    apply_row_level_security,
    install_tenant_guard,
)

__all__ = [
    "API_SHARED_TABLES", "API_TENANT_TABLES", "REGISTRY_TENANT_TABLES", "TENANT_SETTING", "RlsReport",
    "TenantContextError", "TenantPathError", "apply_row_level_security", "current_tenant", "install_tenant_guard",
    "require_tenant", "tenant_path", "tenant_scope",
]
