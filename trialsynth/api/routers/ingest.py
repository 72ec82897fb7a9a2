"""``/ingest/v1``: upload an EDC drop into the landing zone; the landing sensor does the rest.

Two ways in: one multipart request (``POST /ingest/v1/drops``), or presigned S3 PUT URLs and a finish
step (``POST /ingest/v1/drops/uploads``, then ``.../{upload_id}/finish``; :mod:`trialsynth.api.uploads`).
Either way the files are written into a hidden folder (``.<drop_id>.upload-<uuid>``, which the sensor skips),
renamed to ``<landing>/<tenant>/<study>/<drop_id>/`` and the ``_READY`` marker is written last, so the
sensor never reads a half-written drop. File names follow :func:`trialsynth.names.validate_name`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from sqlalchemy import insert, select, update
from starlette.responses import Response

from trialsynth.api.deps import ApiContext, Caller, Ctx, IdempotencyKey, idempotent, problems
from trialsynth.api.idempotency import json_response
from trialsynth.api.problems import ProblemError, invalid, not_found
from trialsynth.api.schemas import Drop, DropUpload, UploadRequest
from trialsynth.api.store import now
from trialsynth.api.store import uploads_table as U
from trialsynth.api.uploads import UploadBucket, object_key
from trialsynth.ingest.landing import READY_MARKERS
from trialsynth.names import SAFE_NAME, identity_clashes, validate_name
from trialsynth.storage import open_lake_store

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
    check_file_names([upload.filename or "" for upload in files])
    described = [(validate_name(upload.filename, "file name"), *_digest(upload)) for upload in files]
    payload = {"study": study, "drop_id": drop_id, "files": sorted([n, s] for n, _size, s in described)}

    def write(staging: Path) -> None:
        for upload, (name, _size, _sha) in zip(files, described, strict=True):
            upload.file.seek(0)
            with open(staging / name, "wb") as out:
                shutil.copyfileobj(upload.file, out, _CHUNK)

    def handler(resource_id: str) -> Response:
        check_tenant(ctx, caller.tenant)
        with ctx.quota(caller.tenant):
            return land(ctx.settings.landing_dir / caller.tenant / study, caller.tenant, study,
                        drop_id or f"api-{resource_id[:16]}", described, write)

    return idempotent(ctx, caller, request, key, payload, handler)


def check_file_names(names: list[str], suffix: str = "") -> None:
    """422 naming the file (``body.files.<i><suffix>``): unsafe names, the ready marker, duplicates."""
    for i, name in enumerate(names):
        try:
            validate_name(name, "file name")
        except ValueError as exc:
            raise invalid(f"body.files.{i}{suffix}", str(exc)) from None
        if name in READY_MARKERS:
            raise invalid(f"body.files.{i}{suffix}", f"{name!r} is the ready marker; the API writes it")
    if len(set(names)) != len(names):
        raise invalid("body.files", "two files have the same name")


def check_tenant(ctx: ApiContext, tenant: str) -> None:
    # the tenants already in the raw zone, asked of the store the settings choose (a folder or the S3 bucket)
    clash = identity_clashes([tenant], open_lake_store(ctx.settings, "raw").children()).get(tenant)
    if clash:
        raise ProblemError(409, "tenant-clash", "Tenant name clash", clash)


def drop_exists(drop_id: str, study: str) -> ProblemError:
    return ProblemError(409, "drop-exists", "Drop exists", f"drop_id: drop {drop_id!r} of {study} already landed",
                        errors=[{"field": "body.drop_id", "pointer": "/drop_id", "detail": "already landed"}])


def land(study_dir: Path, tenant: str, study: str, drop_id: str, described: list[tuple[str, int, str]],
         write: Callable[[Path], None]) -> Response:
    """``write(folder)`` the drop's files into a hidden folder, fsync them, rename it into place, then the
    ready marker (module doc); ``described``: (name, bytes, sha256) of each file."""
    final = study_dir / drop_id
    if final.exists():
        raise drop_exists(drop_id, study)
    staging = study_dir / f".{drop_id}.upload-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        write(staging)
        for name, _size, _sha in described:
            with open(staging / name, "rb") as written:
                os.fsync(written.fileno())
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (final / "_READY").touch()  # last: the sensor reads a drop only once this exists
    body = {"drop_id": drop_id, "study": study, "ready": True, "landing": f"landing:{tenant}/{study}/{drop_id}/",
            "files": [{"name": n, "bytes": size, "sha256": sha} for n, size, sha in described]}
    return json_response(201, body)


@router.post("/drops/uploads", status_code=201, response_model=DropUpload, responses=problems(400, 404, 409, 422, 503))
def start_upload(body: UploadRequest, request: Request, ctx: Ctx, caller: Caller, key: IdempotencyKey) -> Response:
    """Declare a drop (each file's name, size and sha256) and get a presigned S3 PUT URL per file; PUT the
    files, then POST ``finish``. 404 ``presigned-uploads-disabled`` when the deployment has no upload bucket."""
    check_file_names([f.name for f in body.files], ".name")
    total = sum(f.bytes for f in body.files)
    if total > ctx.settings.api.max_upload_bytes:
        raise invalid("body.files", f"{total} bytes in all: above the drop limit of {ctx.settings.api.max_upload_bytes}")
    payload = body.model_dump(mode="json")
    bucket = UploadBucket(ctx.settings.api)

    def handler(upload_id: str) -> Response:
        tenant = caller.tenant
        check_tenant(ctx, tenant)
        drop_id = body.drop_id or f"api-{upload_id[:16]}"
        if (ctx.settings.landing_dir / tenant / body.study / drop_id).exists():
            raise drop_exists(drop_id, body.study)
        files = [f.model_dump() for f in body.files]
        targets = [f | {"url": bucket.put_url(object_key(tenant, body.study, upload_id, f["name"])), "method": "PUT"}
                   for f in files]
        created = now()
        expires = created + timedelta(seconds=bucket.ttl_s)
        with ctx.quota(tenant), ctx.engine.begin() as conn:
            conn.execute(insert(U).values(id=upload_id, tenant=tenant, study=body.study, drop_id=drop_id, files=files,
                                          status="open", created_at=created, expires_at=expires))
        finish = f"/ingest/v1/drops/uploads/{upload_id}/finish"
        return json_response(201, {"upload_id": upload_id, "study": body.study, "drop_id": drop_id,
                                   "expires_at": expires.isoformat(), "files": targets, "finish": finish},
                             {"Location": finish})

    return idempotent(ctx, caller, request, key, payload, handler)


@router.post("/drops/uploads/{upload_id}/finish", status_code=201, response_model=Drop,
             responses=problems(400, 404, 409, 422, 503))
def finish_upload(upload_id: str, request: Request, ctx: Ctx, caller: Caller, key: IdempotencyKey) -> Response:
    """Land the uploaded files as ``<landing>/<tenant>/<study>/<drop_id>/`` with its ready marker, each file
    checked against its declared size and sha256 (422 naming the file), then delete the objects. 409
    ``upload-incomplete`` names a file not PUT yet (finish again later with a new key)."""
    bucket = UploadBucket(ctx.settings.api)

    def handler(_resource_id: str) -> Response:
        tenant = caller.tenant
        with ctx.engine.connect() as conn:
            row = conn.execute(select(U).where(U.c.id == upload_id, U.c.tenant == tenant)).first()
        if row is None or row.status != "open":
            raise not_found("open upload", upload_id)
        keys = [object_key(tenant, row.study, upload_id, f["name"]) for f in row.files]
        described = [(f["name"], f["bytes"], f["sha256"]) for f in row.files]

        def write(staging: Path) -> None:
            for object_name, (name, size, sha) in zip(keys, described, strict=True):
                bucket.fetch(object_name, name, staging / name, size, sha)

        response = land(ctx.settings.landing_dir / tenant / row.study, tenant, row.study, row.drop_id, described,
                        write)
        with ctx.engine.begin() as conn:
            conn.execute(update(U).where(U.c.id == upload_id, U.c.tenant == tenant).values(status="landed"))
        bucket.delete(keys)
        return response

    return idempotent(ctx, caller, request, key, {"upload_id": upload_id}, handler)
