"""``/evidence/v1``: the evidence pack a generation run wrote (JSON, or the HTML report); and the HTML
report behind a signed link, which the ``evidence_pack`` asset's page in Dagster links to (no token:
see :mod:`trialsynth.api.report_links`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from trialsynth.api.deps import Caller, Ctx, problems
from trialsynth.api.problems import not_found
from trialsynth.api.report_links import signature_is_valid
from trialsynth.artifacts import read_evidence
from trialsynth.names import SAFE_NAME
from trialsynth.security import KeyService

router = APIRouter(prefix="/evidence/v1", tags=["evidence"])
PACK_FILES = {"json": ("evidence.json", "application/json"), "html": ("report.html", "text/html; charset=utf-8")}


def find_pack(lake: Path, tenant: str, run_id: str) -> Path | None:
    """``<lake>/<tenant>/<study>/evidence/<run_id>/`` of one of the tenant's studies, if it exists."""
    if not SAFE_NAME.fullmatch(run_id):
        return None
    for folder in (lake / tenant).glob(f"*/evidence/{run_id}"):
        if (folder / "evidence.json").is_file():
            return folder
    return None


@router.get("/runs/{run_id}", responses={**problems(404), 200: {
    "description": "the evidence pack", "content": {"application/json": {"schema": {"type": "object"}},
                                                    "text/html": {"schema": {"type": "string"}}}}})
async def get_pack(run_id: str, ctx: Ctx, caller: Caller,
             format: Literal["json", "html"] = Query("json", description="json: the pack; html: the report")) -> Any:
    """The evidence pack of generation run ``run_id`` (the job's ``batch_id``), exactly as the run wrote it."""
    # async, reading inline: one small file from a folder the glob finds at once; a thread hop per request
    # would cost more than the read
    folder = find_pack(ctx.settings.lake_dir, caller.tenant, run_id)
    if folder is None:
        raise not_found("evidence pack", run_id)
    name, media_type = PACK_FILES[format]
    return Response(read_evidence(folder / name, caller.tenant, KeyService(ctx.settings)), media_type=media_type)


@router.get("/reports/{tenant}/{study}/{run_id}", responses={**problems(404), 200: {
    "description": "the HTML evidence report", "content": {"text/html": {"schema": {"type": "string"}}}}})
def get_linked_report(tenant: str, study: str, run_id: str, ctx: Ctx,
                      sig: str = Query(..., pattern="^[0-9a-f]{64}$",
                                       description="the link's signature (the Dagster asset page's link)")) -> Any:
    """The HTML report of evidence run ``run_id`` of a tenant's study, for the link on the
    ``evidence_pack`` asset's page in Dagster: no bearer token, the link's signature authorizes this one
    report. A wrong signature and a missing report answer the same 404."""
    names_ok = all(SAFE_NAME.fullmatch(n) and ".." not in n for n in (tenant, study, run_id))
    report = ctx.settings.lake_dir / tenant / study / "evidence" / run_id / PACK_FILES["html"][0]
    if not (names_ok and signature_is_valid(ctx.settings, tenant, study, run_id, sig) and report.is_file()):
        raise not_found("evidence report", run_id)
    return Response(read_evidence(report, tenant, KeyService(ctx.settings)), media_type=PACK_FILES["html"][1])
