"""Where lineage objects are kept: a folder (embedded default) or an S3 bucket with Object Lock.

Both backends hold the same keys and bytes (``lineage/<tenant>/<study>/...``); the chain logic in
:mod:`trialsynth.lineage.store` only needs :class:`ObjectBackend`. Objects written with
:meth:`put_new` are write-once: create-if-absent (``link()`` locally, ``If-None-Match: *`` on S3), and on
S3 under Object Lock COMPLIANCE retention that is read back and checked after every write.
:func:`put_locked_object` is the same write for any bucket (the raw zone's sponsor bytes), and
:func:`protect_bucket` sets the bucket policy that refuses deletes (delete markers included).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

NO_DELETE_SID = "TrialsynthNoDelete"
S3_READ_THREADS = 16  # concurrent GETs while verifying (the client's connection pool is sized to match)


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
    read_threads: int  # concurrent reads worth making (1: a local disk; S3: round trips dominate)

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

    def protection_problem(self, prefix: str) -> str | None:
        """None when deletes under ``prefix`` are refused by the store itself, else why not."""
        ...


class LocalBackend:
    """Objects as files under ``root`` (the lake), made read-only (0444) once written."""

    worm = False
    read_threads = 1

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

    def protection_problem(self, prefix: str) -> str | None:
        return None  # a folder refuses nothing to its owner; verification says so once for the whole store


def _same_statement(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Equal policy statements, whether a single Action/Resource is written as a string or a list."""
    def norm(st: dict[str, Any]) -> dict[str, Any]:
        return {k: sorted(v) if isinstance(v, list) else sorted([v]) if k in ("Action", "Resource") else v
                for k, v in st.items()}
    return norm(found) == norm(wanted)


def _retain_until(days: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def no_delete_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """S3 bucket policy refusing, to every principal, the deletes S3 versioning would otherwise accept
    on objects under ``prefix``: a DELETE without version id (which adds a delete marker over a locked
    version) and version deletes (which Object Lock already refuses while retention lasts)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": NO_DELETE_SID, "Effect": "Deny", "Principal": "*",
        "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*"]}]}


def protect_bucket(client: Any, bucket: str, prefix: str) -> None:
    """Set :func:`no_delete_policy` as ``bucket``'s policy (replacing any other: the lineage bucket has no
    other). Needs s3:PutBucketPolicy: run it where the bucket is created, not from the writers.

    Overwrites cannot be refused the same way on SeaweedFS 4.48: its policy conditions see only
    ``x-amz-*`` headers, so a Deny of PutObject without ``s3:if-none-match`` (AWS's way) also refuses
    the conditional writes the store makes. A plain PUT over a locked object adds a newer version;
    verification reads the locked original by version id and names the key as overwritten.
    """
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(no_delete_policy(bucket, prefix)))


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


def check_locked_object(client: Any, bucket: str, key: str, version_id: str, sha256: str,
                        now: datetime | None = None) -> str | None:
    """None when version ``version_id`` of ``key`` (as :func:`put_locked_object` returned it) is still
    there with bytes hashing to ``sha256`` (hex), unexpired COMPLIANCE retention, and nothing written
    over it (no newer version, no delete marker); else what is wrong, naming the object.

    Two requests: one GET of that version (bytes and Object Lock headers together) and one listing of
    the key's versions. For the raw zone's sponsor bytes what verification does for lineage objects.
    """
    import hashlib

    from botocore.exceptions import ClientError

    where = f"s3://{bucket}/{key} (version {version_id})"
    try:
        got = client.get_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as exc:
        if _error_code(exc) in {"NoSuchKey", "NoSuchVersion", "404"}:
            return f"{where} is gone"
        raise
    if hashlib.sha256(got["Body"].read()).hexdigest() != sha256:
        return f"{where}: its bytes no longer hash to the recorded sha256 {sha256[:12]}..."
    until = got.get("ObjectLockRetainUntilDate")
    if got.get("ObjectLockMode") != "COMPLIANCE" or until is None:
        return f"{where} has no COMPLIANCE retention (Object Lock mode {got.get('ObjectLockMode')})"
    if until <= (now or datetime.now(UTC)):
        return f"{where}: retention expired at {until.isoformat()}"
    listed = client.list_object_versions(Bucket=bucket, Prefix=key)
    newer = [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key and v["VersionId"] != version_id]
    markers = [m for m in listed.get("DeleteMarkers", []) if m["Key"] == key]
    if newer or markers:
        return (f"{where}: written over since ({len(newer)} newer version(s), {len(markers)} delete marker(s)); "
                "the locked version is intact")
    return None


class S3Backend:
    """Objects in an S3 bucket created with Object Lock; write-once keys get COMPLIANCE retention."""

    worm = True
    read_threads = S3_READ_THREADS

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

    def protection_problem(self, prefix: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            policy = json.loads(self.client.get_bucket_policy(Bucket=self.bucket)["Policy"])
        except ClientError as exc:
            if _error_code(exc) != "NoSuchBucketPolicy":  # say, a verifier not allowed to read the policy
                return f"{self.location}: its bucket policy cannot be read ({_error_code(exc) or exc})"
            policy = {}
        wanted = no_delete_policy(self.bucket, prefix)["Statement"][0]
        if not any(_same_statement(st, wanted) for st in policy.get("Statement", [])):
            return (f"{self.location} has no bucket policy refusing deletes under {prefix} (a DELETE adds a delete "
                    "marker instead of being refused; verification still names it): apply "
                    "trialsynth.lineage.backends.protect_bucket where the bucket is created")
        return None

    def children(self, prefix: str) -> list[str]:
        names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix,
                                                                         Delimiter="/"):
            names += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(names)
