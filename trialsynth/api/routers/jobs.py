"""``/jobs``: the tenant's API jobs and their Dagster runs."""

from __future__ import annotations

from fastapi import APIRouter, Query

from trialsynth.api.deps import Caller, Ctx, problems
from trialsynth.api.schemas import Job, JobList, JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=Job, responses=problems(404, 502, 503))
def get_job(job_id: str, ctx: Ctx, caller: Caller) -> dict:
    """Status (queued, running, succeeded, failed, canceled), the Dagster run id and, once finished,
    the outputs with their links (or the error). Another tenant's job answers 404."""
    return ctx.jobs.get(caller.tenant, job_id)


@router.get("", response_model=JobList, responses=problems(422, 502, 503))
def list_jobs(ctx: Ctx, caller: Caller, status: JobStatus | None = None,
              limit: int = Query(50, ge=1, le=500)) -> dict:
    """The tenant's own jobs, newest first, optionally only those with ``status``."""
    return {"jobs": ctx.jobs.list(caller.tenant, status, limit)}
