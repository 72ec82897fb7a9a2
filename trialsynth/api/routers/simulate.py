"""``/simulate/v1``: power curves and recommended N per arm; analytic at once, simulations as a job."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response

from trialsynth.api.deps import ApiContext, Caller, Ctx, IdempotencyKey, idempotent, problems
from trialsynth.api.power import PowerRequest, check_simulation_size, power_report
from trialsynth.api.problems import invalid
from trialsynth.api.routers.synth import accepted
from trialsynth.api.schemas import Job, PowerReport
from trialsynth.api.store import now
from trialsynth.api.store import power_cache_table as C
from trialsynth.hashing import canonical_json, sha256_json

router = APIRouter(prefix="/simulate/v1", tags=["simulate"])


def _field_error(exc: ValueError):
    name, _, detail = str(exc).partition(": ")
    field = name if name in PowerRequest.model_fields else "body"
    return invalid(f"body.{field}" if field != "body" else "body", detail or str(exc))


RECENT_MAX = 1024  # analytic answers kept in the process, in front of the table


def cached_report(ctx: ApiContext, body: PowerRequest) -> Response:
    """The analytic report, from the cache keyed by the canonical request hash when it was asked before
    (the ``api_power_cache`` table, shared by replicas and restarts, with this process's recent answers
    in front of it)."""
    digest = sha256_json(body.model_dump(mode="json"))
    hit = ctx.recent_power.get(digest)
    if hit is None:
        with ctx.engine.connect() as conn:
            hit = conn.execute(select(C.c.response).where(C.c.request_sha256 == digest)).scalar()
    if hit is not None:
        _remember(ctx.recent_power, digest, hit)
        return Response(hit, media_type="application/json", headers={"X-Cache": "hit"})
    try:
        text = canonical_json(power_report(body))
    except ValueError as exc:
        raise _field_error(exc) from None
    try:
        with ctx.engine.begin() as conn:
            conn.execute(insert(C).values(request_sha256=digest, response=text, created_at=now()))
    except IntegrityError:
        pass  # the same request, computed at the same time
    _remember(ctx.recent_power, digest, text)
    return Response(text, media_type="application/json", headers={"X-Cache": "miss"})


def _remember(recent: dict[str, str], digest: str, text: str) -> None:
    if digest not in recent and len(recent) >= RECENT_MAX:
        recent.pop(next(iter(recent)), None)  # the oldest entry (dicts keep insertion order)
    recent[digest] = text


@router.post("/power", response_model=PowerReport, responses={
    **problems(400, 409, 422, 502, 503), 202: {"model": Job, "description": "a simulation job (simulations > 0)"}})
def power(body: PowerRequest, request: Request, ctx: Ctx, caller: Caller, key: IdempotencyKey) -> Response:
    """Recommended N per arm and power curves for a two-arm design, with every input echoed and the seed.
    ``simulations: 0`` answers now (identical requests from a cache); ``simulations > 0`` queues a
    simulation job whose result is the same report with simulated points."""
    payload = body.model_dump(mode="json")

    def handler(job_id: str) -> Response:
        if not body.simulations:
            return cached_report(ctx, body)
        try:
            check_simulation_size(body)
        except ValueError as exc:
            raise _field_error(exc) from None
        request_config = body.model_dump(mode="json", exclude_none=True)  # Dagster config has no nulls
        run_config = {"ops": {"simulate_power_curves": {"config": {"request": request_config}}}}
        with ctx.quota(caller.tenant):
            return accepted(ctx.jobs.create(caller.tenant, "simulate", body.study, payload, run_config, job_id))

    return idempotent(ctx, caller, request, key, payload, handler)
