"""``/healthz`` (the process answers), ``/readyz`` (the stores it needs answer), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import Response

from trialsynth.api.dagster import DagsterUnavailable
from trialsynth.api.deps import Ctx
from trialsynth.api.idempotency import json_response
from trialsynth.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> dict:
    return {"status": "ok", "checks": {}}


@router.get("/readyz", response_model=Health, responses={503: {"model": Health, "description": "not ready"}})
def readyz(ctx: Ctx) -> Response:
    """Ready when the API store, the lake and the landing zone answer. Dagster is reported but not
    required: without it, job routes answer 503 + Retry-After while evidence and analytic power still work."""
    checks = {}
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["api_store"] = "ok"
    except Exception as exc:  # any driver error means not ready
        checks["api_store"] = f"unavailable: {type(exc).__name__}"
    for name, path in (("lake", ctx.settings.lake_dir), ("landing", ctx.settings.landing_dir)):
        checks[name] = "ok" if path.is_dir() else f"missing: {name} folder"
    try:
        checks["dagster"] = f"ok (dagster {ctx.dagster.ping()})"
    except DagsterUnavailable as exc:
        checks["dagster"] = f"unavailable: {exc}"
    ready = all(v.startswith("ok") for k, v in checks.items() if k != "dagster")
    return json_response(200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": checks})


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                                                                 "description": "Prometheus text format"}})
def metrics(ctx: Ctx) -> Response:
    return Response(generate_latest(ctx.telemetry.registry), media_type=CONTENT_TYPE_LATEST)
