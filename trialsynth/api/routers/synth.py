"""``/synth/v1``: train a synthesizer on a study, review its model, generate a conditional cohort."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from trialsynth.api.deps import ApiContext, Caller, Ctx, IdempotencyKey, idempotent, problems
from trialsynth.api.idempotency import json_response
from trialsynth.api.privacy import check_privacy_budget, synthesis_run_config, training_config
from trialsynth.api.problems import ProblemError, invalid, not_found
from trialsynth.api.schemas import ApproveRequest, GenerateRequest, Job, Model, TrainRequest
from trialsynth.registry import ModelRecord, RegistryError, UnknownModelError
from trialsynth.storage import open_lake_store
from trialsynth.study_config import load_study_config

router = APIRouter(prefix="/synth/v1", tags=["synth"])
APPROVE_SCOPE = "synth:approve"


def require_study(ctx: ApiContext, tenant: str, study: str) -> None:
    """404 unless the tenant has this study in the lake (its bronze tables exist), asked of the lake store
    the settings choose (a folder or the S3 lake bucket)."""
    store = open_lake_store(ctx.settings)
    if "bronze" not in store.children(store.guard(tenant, f"{tenant}/{study}")):
        raise ProblemError(404, "not-found", "Not found", f"study: no study {study!r} with ingested data for this tenant",
                           errors=[{"field": "body.study", "pointer": "/study", "detail": "unknown study"}])


def tenant_model(ctx: ApiContext, tenant: str, model_id: str) -> ModelRecord:
    """The tenant's synthesizer ``model_id`` (registry name ``<tenant>/<study>/<synthesizer>``), else 404."""
    try:
        record = ctx.registry.get(model_id)
    except UnknownModelError:
        raise not_found("model", model_id) from None
    if record.kind != "synthesizer" or record.name.split("/")[0] != tenant:
        raise not_found("model", model_id)
    return record


def describe_model(record: ModelRecord) -> dict:
    _tenant, study, synthesizer = record.name.split("/")
    return {"model_id": record.id, "name": record.name, "study": study, "synthesizer": synthesizer,
            "status": record.status, "trained_at": record.trained_at.isoformat(), "trained_by": record.trained_by,
            "parameters": record.parameters, "seed": record.seed, "metrics": record.metrics}


def accepted(job: dict) -> Response:
    return json_response(202, job, {"Location": job["links"]["self"]})


@router.post("/train", status_code=202, response_model=Job, responses=problems(400, 404, 409, 422, 502, 503))
def train(body: TrainRequest, request: Request, ctx: Ctx, caller: Caller, key: IdempotencyKey) -> Response:
    """Train (or reuse) the study's synthesizer as a Dagster run; the model is registered as a draft.

    With ``privacy`` (or the study config's) the synthesizer must be ``dp_copula`` or ``mst`` and the
    training spends that (epsilon, delta) budget of the study's data version: a budget over the study's
    cap, or over what is left of it, is refused with 409 ``privacy-budget-exceeded`` naming the cap, the
    spent and the remaining budget."""
    payload = body.model_dump(mode="json", exclude_none=True)

    def handler(job_id: str) -> Response:
        require_study(ctx, caller.tenant, body.study)
        study_cfg = load_study_config(ctx.settings.studies_path, body.study)[0]
        check_privacy_budget(ctx.registry, caller.tenant, body.study, study_cfg, body)
        training_config(study_cfg, body)  # 422 for what the run would refuse
        run_config = {"ops": {"synthesizer_model": {"config": synthesis_run_config(body)}}}
        with ctx.quota(caller.tenant):
            return accepted(ctx.jobs.create(caller.tenant, "train", body.study, payload, run_config, job_id))

    return idempotent(ctx, caller, request, key, payload, handler)


@router.get("/models/{model_id}", response_model=Model, responses=problems(404))
def get_model(model_id: str, ctx: Ctx, caller: Caller) -> dict:
    """A synthesizer model of the tenant: status (draft, approved, retired), parameters, metrics."""
    return describe_model(tenant_model(ctx, caller.tenant, model_id))


@router.post("/models/{model_id}/approve", response_model=Model,
             responses=problems(400, 403, 404, 409, 422))
def approve_model(model_id: str, body: ApproveRequest, request: Request, ctx: Ctx, caller: Caller,
                  key: IdempotencyKey) -> Response:
    """Approve a draft model (token scope ``synth:approve``); the reviewer is the token's subject."""
    caller.require(APPROVE_SCOPE)

    def handler(_resource_id: str) -> Response:
        record = tenant_model(ctx, caller.tenant, model_id)
        try:
            record = ctx.registry.approve(record.id, by=caller.subject, why=body.why)
        except RegistryError as exc:
            raise ProblemError(409, "model-status-conflict", "Model status conflict", str(exc)) from None
        return json_response(200, describe_model(record))

    return idempotent(ctx, caller, request, key, body.model_dump(mode="json"), handler)


@router.post("/generate", status_code=202, response_model=Job, responses=problems(400, 404, 409, 422, 502, 503))
def generate(body: GenerateRequest, request: Request, ctx: Ctx, caller: Caller, key: IdempotencyKey) -> Response:
    """Generate ``n`` rows from an approved model (a draft only when the study config allows drafts),
    every row in the requested strata, and its evidence pack, as a Dagster run. The batch id is the run id."""
    payload = body.model_dump(mode="json", exclude_none=True)

    def handler(job_id: str) -> Response:
        record = tenant_model(ctx, caller.tenant, body.model_id)
        model = describe_model(record)
        study_cfg = load_study_config(ctx.settings.studies_path, model["study"])[0]
        if record.status == "retired" or (record.status == "draft" and not study_cfg.synthesis.allow_unapproved):
            raise ProblemError(409, "model-not-approved", "Model not approved",
                               f"model_id: model {record.id} is {record.status}; generate needs an approved model",
                               errors=[{"field": "body.model_id", "pointer": "/model_id",
                                        "detail": f"model is {record.status}"}])
        if body.conditions and any(not str(c) for c in body.conditions):
            raise invalid("body.conditions", "column names must not be empty")
        config = {"model_id": record.id, "synthesizer": model["synthesizer"], "n": body.n,
                  "conditions": body.conditions}
        if body.seed is not None:
            config["seed"] = body.seed
        run_config = {"ops": {"synthetic_cohort": {"config": config}, "evidence_pack": {"config": config}}}
        with ctx.quota(caller.tenant):
            return accepted(ctx.jobs.create(caller.tenant, "generate", model["study"], payload, run_config, job_id))

    return idempotent(ctx, caller, request, key, payload, handler)
