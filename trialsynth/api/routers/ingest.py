"""``/ingest/v1``: upload an EDC drop into the landing zone; the landing sensor does the rest.

The files are written into a hidden folder (``.<drop_id>.upload-<uuid>``, which the sensor skips),
renamed to ``<landing>/<tenant>/<study>/<drop_id>/`` and the ``_READY`` marker is written last, so the
sensor never reads a half-written drop. File names follow :func:`trialsynth.names.validate_name`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.responses import Response

from trialsynth.api.deps import Caller, Ctx, IdempotencyKey, idempotent, problems
from trialsynth.api.idempotency import json_response
from trialsynth.api.problems import ProblemError, invalid
from trialsynth.api.schemas import Drop
from trialsynth.ingest.landing import READY_MARKERS
from trialsynth.ingest.raw_zone import known_tenants
from trialsynth.names import SAFE_NAME, identity_clashes, validate_name

router = APIRouter(prefix="/ingest/v1", tags=["ingest"])
MAX_FILES = 200
_CHUNK = 1 << 20


def _digest(upload: UploadFile) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    upload.file.seek(0)
    for block in iter(lambda: upload.file.read(_CHUNK), b""):
        digest.update(block)
        size += len(block)
    upload.file.seek(0)
    return size, digest.hexdigest()


@router.post("/drops", status_code=201, response_model=Drop, responses=problems(400, 409, 422))
def upload_drop(request: Request, ctx: Ctx, caller: Caller, key: IdempotencyKey,
                study: Annotated[str, Form(pattern=SAFE_NAME.pattern)],
                files: Annotated[list[UploadFile], File(min_length=1, max_length=MAX_FILES,
                                                         description="the drop's files (CSV, Parquet, SAS XPT, define.xml)")],
                drop_id: Annotated[str | None, Form(pattern=f"^({SAFE_NAME.pattern.strip('^$')})?$",
                                                    description="empty or absent: the API names the drop")] = None,
                ) -> Response:
    """Land an EDC drop (multipart) as ``<landing>/<tenant>/<study>/<drop_id>/`` with its ready marker."""
    if len(files) > MAX_FILES:
        raise invalid("body.files", f"at most {MAX_FILES} files per drop")
    described = []
    for i, upload in enumerate(files):
        try:
            name = validate_name(upload.filename or "", "file name")
        except ValueError as exc:
            raise invalid(f"body.files.{i}", str(exc)) from None
        if name in READY_MARKERS:
            raise invalid(f"body.files.{i}", f"{name!r} is the ready marker; the API writes it")
        described.append((name, *_digest(upload)))
    if len({d[0] for d in described}) != len(described):
        raise invalid("body.files", "two files have the same name")
    payload = {"study": study, "drop_id": drop_id, "files": sorted([n, s] for n, _size, s in described)}

    def handler(resource_id: str) -> Response:
        tenant = caller.tenant
        clash = identity_clashes([tenant], known_tenants(ctx.settings.raw_dir)).get(tenant)
        if clash:
            raise ProblemError(409, "tenant-clash", "Tenant name clash", clash)
        with ctx.quota(tenant):
            return land(ctx.settings.landing_dir / tenant / study, tenant, study, drop_id or f"api-{resource_id[:16]}",
                        files, described)

    return idempotent(ctx, caller, request, key, payload, handler)


def land(study_dir: Path, tenant: str, study: str, drop_id: str, files: list[UploadFile],
         described: list[tuple[str, int, str]]) -> Response:
    """Write the drop into a hidden folder, rename it into place, then the ready marker (module doc)."""
    final = study_dir / drop_id
    if final.exists():
        raise ProblemError(409, "drop-exists", "Drop exists", f"drop_id: drop {drop_id!r} of {study} already landed",
                           errors=[{"field": "body.drop_id", "pointer": "/drop_id", "detail": "already landed"}])
    staging = study_dir / f".{drop_id}.upload-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        for upload, (name, _size, _sha) in zip(files, described, strict=True):
            upload.file.seek(0)
            with open(staging / name, "wb") as out:
                shutil.copyfileobj(upload.file, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (final / "_READY").touch()  # last: the sensor reads a drop only once this exists
    body = {"drop_id": drop_id, "study": study, "ready": True, "landing": f"landing:{tenant}/{study}/{drop_id}/",
            "files": [{"name": n, "bytes": size, "sha256": sha} for n, size, sha in described]}
    return json_response(201, body)
