"""Presigned S3 uploads of EDC drops (``/ingest/v1/drops/uploads``): the bytes go from the client to
the bucket ``api.upload_bucket`` directly, never through the API.

1. ``POST /ingest/v1/drops/uploads`` declares the drop (study, drop id, each file's name, size and
   sha256) and gets one presigned PUT URL per file, valid ``api.upload_url_ttl_s``. The object keys are
   the API's (``<tenant>/<study>/<upload_id>/<file>``), never the client's.
2. The client PUTs each file.
3. ``POST /ingest/v1/drops/uploads/{upload_id}/finish`` copies the objects into the landing zone
   (verifying each file's size and sha256 against the declaration), writes the ready marker last
   like a multipart upload, and deletes the objects.

The upload's declaration is a row of ``api_uploads`` (tenant-scoped like every API table).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from trialsynth.api.problems import ProblemError, field_error, unavailable
from trialsynth.lineage.store import s3_client
from trialsynth.settings import ApiSettings

_CHUNK = 1 << 20


def object_key(tenant: str, study: str, upload_id: str, name: str) -> str:
    return f"{tenant}/{study}/{upload_id}/{name}"


class UploadBucket:
    """The upload bucket of ``api`` settings; S3 errors become problems (503 when S3 is unreachable)."""

    def __init__(self, api: ApiSettings) -> None:
        if not api.upload_bucket:
            raise ProblemError(404, "presigned-uploads-disabled", "Presigned uploads disabled",
                               "this deployment takes drops as multipart uploads only (api.upload_bucket is not set)")
        self.bucket, self.ttl_s = api.upload_bucket, api.upload_url_ttl_s
        self.client = s3_client(api.upload_s3_endpoint_url)

    def put_url(self, key: str) -> str:
        try:
            return self.client.generate_presigned_url("put_object", Params={"Bucket": self.bucket, "Key": key},
                                                      ExpiresIn=self.ttl_s, HttpMethod="PUT")
        except Exception as exc:  # botocore: no credentials, bad endpoint ...
            raise unavailable(f"cannot sign upload URLs: {type(exc).__name__}: {exc}", 30) from None

    def fetch(self, key: str, name: str, target: Path, size: int, sha256: str) -> None:
        """Write the object ``key`` to ``target``; 409 when it was not uploaded, 422 naming the file when
        its size or sha256 is not the declared one."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                detail = f"upload.files.{name}: not uploaded yet (PUT it to its URL, then finish again)"
                raise ProblemError(409, "upload-incomplete", "Upload incomplete", detail,
                                   errors=[field_error(f"upload.files.{name}", "not uploaded")]) from None
            raise unavailable(f"the upload bucket answered {exc}", 5) from None
        except BotoCoreError as exc:
            raise unavailable(f"the upload bucket is unreachable: {exc}", 5) from None
        digest, written = hashlib.sha256(), 0
        with open(target, "wb") as out:
            for block in iter(lambda: body.read(_CHUNK), b""):
                written += len(block)
                if written > size:
                    break
                digest.update(block)
                out.write(block)
        if written != size or digest.hexdigest() != sha256:
            what = f"{written}{'+' if written > size else ''} bytes" if written != size else "another sha256"
            detail = f"upload.files.{name}: the uploaded object has {what}, not the declared {size} bytes / sha256"
            raise ProblemError(422, "upload-mismatch", "Upload does not match its declaration", detail,
                               errors=[field_error(f"upload.files.{name}", detail)])

    def delete(self, keys: list[str]) -> None:
        """Best effort: the drop has landed; a leftover object only costs storage (bucket lifecycle)."""
        from botocore.exceptions import BotoCoreError, ClientError

        with contextlib.suppress(BotoCoreError, ClientError):
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys]})
