"""The tenant the running code acts for: one context variable, set only by :func:`tenant_scope`.

Who sets it: the API right after authenticating the caller (the token's ``tenant`` claim), a Dagster
step from its run's ``tenant|study`` partition, a CLI command from its ``--tenant`` option. Nothing
reads a tenant from request bodies, query strings or file contents to decide what may be seen: the
Postgres guard (:func:`trialsynth.tenancy.postgres.install_tenant_guard`) and the lake guard read
only this variable (or a tenant fixed when the engine was made).

A ``ContextVar`` rather than a global: each thread and each asyncio task sees its own value, so
concurrent API requests of different tenants never see each other's tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from trialsynth.names import validate_name

_current: ContextVar[str | None] = ContextVar("trialsynth_tenant", default=None)


class TenantContextError(PermissionError):
    """Code that needs a tenant ran outside :func:`tenant_scope`."""


@contextmanager
def tenant_scope(tenant: str) -> Iterator[str]:
    """Act for ``tenant`` inside the ``with`` block (nested scopes restore the outer tenant).

    ``tenant`` must be a safe name (:func:`trialsynth.names.validate_name`), else ValueError.
    """
    token = _current.set(validate_name(tenant, "tenant"))
    try:
        yield tenant
    finally:
        _current.reset(token)


def current_tenant() -> str | None:
    """The tenant of the innermost :func:`tenant_scope`, or None outside any."""
    return _current.get()


def require_tenant() -> str:
    """The current tenant; TenantContextError when no :func:`tenant_scope` is active."""
    tenant = _current.get()
    if tenant is None:
        raise TenantContextError("no tenant in context: wrap the call in trialsynth.tenancy.tenant_scope(tenant)")
    return tenant
