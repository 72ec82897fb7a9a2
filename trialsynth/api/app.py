"""``create_app(settings)``: the product API as one FastAPI app.

At startup the tenant keys are checked (:func:`trialsynth.security.check_keys`): an API whose keys do
not open the data refuses to start. Then: token verification, the API store, the Dagster client, the
per-tenant limits, CORS (closed unless ``api.cors_origins`` lists origins) and the routers.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from opentelemetry.sdk.trace import SpanProcessor
from starlette.exceptions import HTTPException as StarletteHTTPException

from trialsynth.api.auth import TokenVerifier
from trialsynth.api.dagster import CircuitBreaker, DagsterClient
from trialsynth.api.deps import ApiContext, reject_unknown_query
from trialsynth.api.idempotency import IdempotencyStore
from trialsynth.api.jobs import JobService
from trialsynth.api.limits import RateLimiter
from trialsynth.api.observability import ApiMiddleware, Telemetry
from trialsynth.api.problems import (
    IDEMPOTENCY_HEADER,
    PROBLEM_JSON,
    ProblemError,
    http_handler,
    internal_error_handler,
    problem_handler,
    validation_handler,
)
from trialsynth.api.routers import evidence, health, impute, ingest, jobs, simulate, synth
from trialsynth.api.store import open_store
from trialsynth.registry import ModelRegistry
from trialsynth.security import KeyService, check_keys
from trialsynth.settings import Settings, get_settings

API_VERSION = "1.0.0"  # the contract's version (paths carry /v1), not the code's: the committed spec must not drift
DESCRIPTION = """Train synthesizers, generate conditional cohorts, impute, fetch evidence packs and compute
power curves, per tenant. Long work runs as Dagster runs (`/jobs/{id}` follows them).

* Every request carries `Authorization: Bearer <JWT>`; the token's `tenant` claim scopes everything.
* Every POST carries an `Idempotency-Key`: a retry with the same key and payload gets the original response.
* Errors are RFC 9457 problem documents (`application/problem+json`) naming the wrong field.
* Limits per tenant (429 + Retry-After), body size (413), request timeout (504)."""


def create_app(settings: Settings | None = None, *, dagster: DagsterClient | None = None,
               span_processor: SpanProcessor | None = None, check_tenant_keys: bool = True) -> FastAPI:
    """The API on ``settings`` (default: the process settings). ``dagster`` replaces the client of
    ``api.dagster_url`` (tests); ``span_processor`` receives the finished spans (an exporter)."""
    settings = settings or get_settings()
    if check_tenant_keys:
        check_keys(settings)
    api = settings.api
    for folder in (settings.lake_dir, settings.landing_dir):
        folder.mkdir(parents=True, exist_ok=True)
    engine = open_store(settings)
    client = dagster or DagsterClient(api.dagster_url, timeout_s=api.dagster_timeout_s, breaker=CircuitBreaker())
    telemetry = Telemetry(span_processor)
    IdempotencyStore(engine).purge_expired()
    ctx = ApiContext(settings=settings, engine=engine, verifier=TokenVerifier(settings),
                     limiter=RateLimiter(api.rate_per_s, api.rate_burst), idempotency=IdempotencyStore(engine),
                     dagster=client, jobs=JobService(settings, engine, client), telemetry=telemetry,
                     registry=ModelRegistry(settings.registry_sqlalchemy_url, keys=KeyService(settings)))

    app = FastAPI(title="trialsynth API", version=API_VERSION, description=DESCRIPTION,
                  dependencies=[Depends(reject_unknown_query)],
                  openapi_tags=[{"name": n} for n in ("synth", "impute", "evidence", "simulate", "jobs", "ingest",
                                                      "health")])
    app.state.ctx = ctx
    for router in (synth.router, impute.router, evidence.router, simulate.router, jobs.router, ingest.router,
                   health.router):
        app.include_router(router)
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(ProblemError, problem_handler)
    app.add_exception_handler(StarletteHTTPException, http_handler)
    if api.cors_origins:  # closed by default: no CORS headers at all
        app.add_middleware(CORSMiddleware, allow_origins=api.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST"], expose_headers=["Location", "Retry-After", "X-Trace-Id"],
                           allow_headers=["Authorization", "Content-Type", IDEMPOTENCY_HEADER, "traceparent"])
    app.add_exception_handler(Exception, internal_error_handler)
    app.add_middleware(ApiMiddleware, telemetry=telemetry, api=api)
    app.openapi = lambda: _problem_openapi(app)
    return app


def _problem_openapi(app: FastAPI) -> dict:
    """FastAPI's spec, with the problem responses' schema under ``application/problem+json`` only."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                           tags=app.openapi_tags)
        for operation in (op for item in spec["paths"].values() for op in item.values()):
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM_JSON in content and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
        app.openapi_schema = spec
    return app.openapi_schema
