"""What every route shares: the app's context, the caller (token -> tenant, rate limit) and the
Idempotency-Key handling of POSTs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPBearer
from sqlalchemy import Engine
from starlette.responses import Response

from trialsynth.api.auth import Principal, TokenVerifier
from trialsynth.api.dagster import DagsterClient
from trialsynth.api.idempotency import IdempotencyStore, fingerprint, run_idempotent
from trialsynth.api.jobs import JobService
from trialsynth.api.limits import RateLimiter, charge_quota, refund_quota
from trialsynth.api.observability import Telemetry, tenant_var
from trialsynth.api.problems import IDEMPOTENCY_HEADER, PROBLEM_JSON, invalid
from trialsynth.api.schemas import Problem
from trialsynth.registry import ModelRegistry
from trialsynth.settings import Settings
from trialsynth.tenancy import tenant_scope


@dataclass
class ApiContext:
    settings: Settings
    engine: Engine
    verifier: TokenVerifier
    limiter: RateLimiter
    idempotency: IdempotencyStore
    dagster: DagsterClient
    jobs: JobService
    telemetry: Telemetry
    registry: ModelRegistry
    recent_power: dict[str, str] = field(default_factory=dict)  # digest -> analytic report (routers/simulate.py)

    @contextmanager
    def quota(self, tenant: str) -> Iterator[None]:
        """One job or upload against the tenant's daily quota (429 when used up), given back when the
        work inside fails (Dagster unreachable ...)."""
        charge_quota(self.engine, tenant, self.settings.api.quota_per_day)
        try:
            yield
        except BaseException:
            refund_quota(self.engine, tenant)
            raise


async def get_ctx(request: Request) -> ApiContext:  # async: no thread hop for a lookup
    return request.app.state.ctx


_bearer = HTTPBearer(auto_error=False, description="JWT with the claims sub, tenant, aud, iss and exp")


async def principal(request: Request, _credentials: Annotated[Any, Depends(_bearer)] = None
                    ) -> AsyncIterator[Principal]:
    """The verified caller; its tenant scopes everything the request can see (the request runs in
    ``tenant_scope(caller.tenant)``: row-level security of the API store and the registry). Rate-limited
    per tenant."""
    ctx: ApiContext = request.app.state.ctx
    caller = ctx.verifier.verify(request.headers.get("authorization"))
    request.scope.setdefault("state", {})["tenant"] = caller.tenant
    tenant_var.set(caller.tenant)
    ctx.limiter.check(caller.tenant)
    with tenant_scope(caller.tenant):
        yield caller


Ctx = Annotated[ApiContext, Depends(get_ctx)]
Caller = Annotated[Principal, Depends(principal)]
IdempotencyKey = Annotated[str, Header(alias=IDEMPOTENCY_HEADER, min_length=1, max_length=255,
                                       description="unique per request; a retry with the same key and payload "
                                       "gets the original response (kept 24 h)")]


def idempotent(ctx: ApiContext, caller: Principal, request: Request, key: str, payload: Any,
               handler: Callable[[str], Response]) -> Response:
    """Run a POST once per (tenant, Idempotency-Key); see :mod:`trialsynth.api.idempotency`."""
    fp = fingerprint(request.method, request.url.path, payload)
    return run_idempotent(ctx.idempotency, caller.tenant, key, fp, handler)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: these statuses answer with a problem document."""
    common = (401, 413, 422, 429, 500, 504)
    return {s: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "problem details (RFC 9457)"}
            for s in sorted(set(statuses) | set(common))}


async def reject_unknown_query(request: Request) -> None:
    """A query parameter the route does not define is an error (a typo must not be ignored silently)."""
    route = request.scope.get("route")
    known = {param.alias for param in getattr(getattr(route, "dependant", None), "query_params", [])}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise invalid(f"query.{unknown[0]}", f"unknown query parameter (this route takes: {', '.join(sorted(known)) or 'none'})")
