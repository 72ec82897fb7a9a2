"""Where lineage objects are kept: a folder (embedded default) or an S3 bucket with Object Lock.

Both backends hold the same keys and bytes (``lineage/<tenant>/<study>/...``); the chain logic in
:mod:`trialsynth.lineage.store` only needs :class:`ObjectBackend`. Objects written with
:meth:`put_new` are write-once: create-if-absent (``link()`` locally, ``If-None-Match: *`` on S3), and on
S3 under Object Lock COMPLIANCE retention that is read back and checked after every write.
:func:`put_locked_object` is the same write for any bucket (the raw zone's sponsor bytes).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol


class ObjectExistsError(Exception):
    """A write-once key is taken (another writer got there first)."""


class WormError(RuntimeError):
    """An object was written but its Object Lock retention is not what was asked for."""


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    lock_mode: str | None = None  # "COMPLIANCE" / "GOVERNANCE" on S3; None = no Object Lock
    retain_until: datetime | None = None


@dataclass(frozen=True)
class KeyVersions:
    """Every stored version of one key, oldest first; ``None`` ids on the local backend."""

    version_ids: list[str | None]
    delete_markers: int = 0

    @property
    def original(self) -> str | None:
        return self.version_ids[0]


class ObjectBackend(Protocol):
    location: str  # shown in reports: file:///... or s3://bucket
    worm: bool  # True when the backend enforces retention (verification then checks it)

    def put_new(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` once; ObjectExistsError when the key exists."""
        ...

    def put_mutable(self, key: str, data: bytes) -> None:
        """Replace ``key`` (only the head hint: never part of what is verified)."""
        ...

    def get(self, key: str, version_id: str | None = None) -> StoredObject | None: ...

    def scan(self, prefix: str) -> dict[str, KeyVersions]:
        """Every key under ``prefix`` with its versions (S3: overwrites and delete markers show here)."""
        ...

    def children(self, prefix: str) -> list[str]:
        """Names of the "folders" directly under ``prefix`` (which ends with '/')."""
        ...


class LocalBackend:
    """Objects as files under ``root`` (the lake), made read-only (0444) once written."""

    worm = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = self.root.resolve().as_uri()

    def path(self, key: str) -> Path:
        return self.root / key

    def put_new(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data)}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        try:
            os.link(tmp, path)  # atomic create-if-absent, the local If-None-Match
        except FileExistsError as exc:
            raise ObjectExistsError(key) from exc
        finally:
            tmp.unlink()

    def put_mutable(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def get(self, key: str, version_id: str | None = None) -> StoredObject | None:
        try:
            return StoredObject(self.path(key).read_bytes())
        except FileNotFoundError:
            return None

    def scan(self, prefix: str) -> dict[str, KeyVersions]:
        base = self.path(prefix)
        if not base.is_dir():
            return {}
        return {p.relative_to(self.root).as_posix(): KeyVersions([None])
                for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")}

    def children(self, prefix: str) -> list[str]:
        base = self.path(prefix)
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def _retain_until(days: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def put_locked_object(client: Any, bucket: str, key: str, data: bytes, retention_days: float,
                      if_none_match: bool = True) -> str:
    """PUT ``data`` under Object Lock COMPLIANCE retention for ``retention_days``, then read the
    retention back and check it. Returns the version id.

    Raises ObjectExistsError when ``if_none_match`` and the key exists, WormError when the bucket did
    not keep the retention asked for (say, a bucket created without Object Lock). Use it for lineage
    objects and for the raw zone's sponsor bytes in the S3 deployment.
    """
    from botocore.exceptions import ClientError

    until = _retain_until(retention_days)
    kwargs = {"IfNoneMatch": "*"} if if_none_match else {}
    try:
        put = client.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256",
                                ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until, **kwargs)
    except ClientError as exc:
        if _error_code(exc) in {"PreconditionFailed", "ConditionalRequestConflict"}:
            raise ObjectExistsError(key) from exc
        raise
    version = put.get("VersionId")
    if not version:
        raise WormError(f"s3://{bucket}/{key}: the bucket returned no version id (versioning and Object Lock off?)")
    try:
        got = client.get_object_retention(Bucket=bucket, Key=key, VersionId=version)["Retention"]
    except ClientError as exc:
        raise WormError(f"s3://{bucket}/{key}: no Object Lock retention after the write ({exc})") from exc
    if got.get("Mode") != "COMPLIANCE" or got["RetainUntilDate"] < until - timedelta(seconds=1):
        raise WormError(f"s3://{bucket}/{key}: retention is {got}, expected COMPLIANCE until {until.isoformat()}")
    return version


class S3Backend:
    """Objects in an S3 bucket created with Object Lock; write-once keys get COMPLIANCE retention."""

    worm = True

    def __init__(self, client: Any, bucket: str, retention_days: float) -> None:
        if retention_days <= 0:
            raise ValueError(f"retention_days must be > 0, got {retention_days}")
        self.client, self.bucket, self.retention_days = client, bucket, retention_days
        self.location = f"s3://{bucket}"

    def put_new(self, key: str, data: bytes) -> None:
        put_locked_object(self.client, self.bucket, key, data, self.retention_days)

    def put_mutable(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")

    def get(self, key: str, version_id: str | None = None) -> StoredObject | None:
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=key, **({"VersionId": version_id} if version_id else {}))
        except ClientError as exc:
            if _error_code(exc) in {"NoSuchKey", "NoSuchVersion", "404"}:
                return None
            raise
        return StoredObject(got["Body"].read(), got.get("ObjectLockMode"), got.get("ObjectLockRetainUntilDate"))

    def scan(self, prefix: str) -> dict[str, KeyVersions]:
        versions: dict[str, list[str]] = {}
        markers: dict[str, int] = {}
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            for v in page.get("Versions", []):  # newest first within a key, as S3 lists them
                versions.setdefault(v["Key"], []).append(v["VersionId"])
            for m in page.get("DeleteMarkers", []):
                markers[m["Key"]] = markers.get(m["Key"], 0) + 1
        return {key: KeyVersions(found[::-1], markers.get(key, 0)) for key, found in versions.items()}

    def children(self, prefix: str) -> list[str]:
        names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix,
                                                                         Delimiter="/"):
            names += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(names)
