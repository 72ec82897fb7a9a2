"""``/evidence/v1``: the evidence pack a generation run wrote (JSON, or the HTML report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from trialsynth.api.deps import Caller, Ctx, problems
from trialsynth.api.problems import not_found
from trialsynth.names import SAFE_NAME

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
def get_pack(run_id: str, ctx: Ctx, caller: Caller,
             format: Literal["json", "html"] = Query("json", description="json: the pack; html: the report")) -> Any:
    """The evidence pack of generation run ``run_id`` (the job's ``batch_id``), exactly as the run wrote it."""
    folder = find_pack(ctx.settings.lake_dir, caller.tenant, run_id)
    if folder is None:
        raise not_found("evidence pack", run_id)
    name, media_type = PACK_FILES[format]
    return Response((folder / name).read_bytes(), media_type=media_type)
