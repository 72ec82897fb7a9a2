"""``/impute/v1``: missingness report and imputation of a study, as a Dagster run."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from trialsynth.api.deps import Caller, Ctx, IdempotencyKey, idempotent, problems
from trialsynth.api.routers.synth import accepted, require_study
from trialsynth.api.schemas import ImputeRequest, Job

router = APIRouter(prefix="/impute/v1", tags=["impute"])


@router.post("/run", status_code=202, response_model=Job, responses=problems(400, 404, 422, 502, 503))
def run(body: ImputeRequest, request: Request, ctx: Ctx, caller: Caller, key: IdempotencyKey) -> Response:
    """Profile the study's missingness, compare the candidate imputers under the assumed mechanism and
    impute with the best; the job's result has the report, the imputed dataset and its lineage."""
    payload = body.model_dump(mode="json", exclude_none=True)

    def handler(job_id: str) -> Response:
        require_study(ctx, caller.tenant, body.study)
        config = {k: v for k, v in payload.items() if k != "study"}
        run_config = {"ops": {"imputation_benchmark": {"config": config}}}
        with ctx.quota(caller.tenant):
            return accepted(ctx.jobs.create(caller.tenant, "impute", body.study, payload, run_config, job_id))

    return idempotent(ctx, caller, request, key, payload, handler)
