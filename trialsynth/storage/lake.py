"""The lake behind one interface: the raw zone, bronze, quarantine and analytics files of every
tenant/study, addressed by POSIX keys ``<tenant>/<study>/...`` relative to a zone's root.

One implementation per deployment, both over :mod:`pyarrow.fs`, chosen by the settings
(:func:`open_lake_store`, ``lake.store``):

- :class:`LocalLakeStore`: a folder (the embedded default, ``<data_dir>/lake`` and ``<data_dir>/raw``);
  every write goes to a temp file renamed into place;
- :class:`S3LakeStore`: a prefix of an S3 bucket (``<s3_prefix>/lake``, ``<s3_prefix>/raw``); every
  write is one PUT, which S3 makes visible whole or not at all.

Code that needs local files (pyreadstat, the ingest core, report writers) takes a
:meth:`LakeStore.working_copy`: the folder itself on the local store; on S3 a private temp folder
holding the objects under the given prefixes, whose changes are published back when the ``with``
block ends without an exception (new and changed files first, index files named ``_*`` after them,
removals last).

A publish to S3 is object by object, so a publish that dies half way (the server killed, the process
killed) would leave a prefix mixing two drops. It is guarded by a publish manifest,
``<prefix>/_PUBLISHING.json`` (every key it writes with its sha256, every key it removes, when it
started), written before the first object and deleted after the last: while one is there, every read
of an object below that prefix (:meth:`LakeStore.read_bytes` and all that build on it) raises
:class:`IncompletePublishError` naming the partition and saying that a rerun repairs it. The rerun's
working copy is compared with what the store holds now, so its publish writes the prefix whole, then
deletes the manifest. The local store needs none of this: its working copy is the zone's folder,
where the ingest core builds a new bronze folder beside the old one and swaps it in by renames
(:func:`trialsynth.ingest.pipeline._swap_in`).

The raw zone of an S3 deployment is write-once (``lake.raw_retention_days`` > 0): every object is
written with Object Lock COMPLIANCE retention, verified after the write
(:func:`trialsynth.lineage.backends.put_locked_object`), and never replaced or removed through the
store (:class:`LockedObjectError`), except the objects an interrupted publish left behind, which its
rerun writes again as newer versions (the bucket keeps the first ones, locked). Its publish manifests
are not deleted but marked completed (recording the keys a rerun wrote again), so its bucket can refuse
every delete (:func:`trialsynth.lineage.backends.protect_bucket`); :meth:`S3LakeStore.lock_problems`
names an object deleted, written over or without retention by another client.

The lake zone of an S3 deployment is stored with server-side encryption under the tenant's own key
(SSE-C, ``lake.s3_sse_c``): every GET and PUT of a tenant's object sends that tenant's key
(:mod:`trialsynth.security.sse`), so an object of tenant A cannot be read with B's key or none, and
destroying A's KEK leaves its objects unreadable (crypto-shredding). Readers that fetch objects
themselves (dbt's ``s3()``) send :meth:`S3LakeStore.reader_headers`. The raw zone holds envelope
objects (AES-256-GCM under the tenant's KEK) and is not also under SSE-C.

Keys are checked by :func:`tenant_key` (and on the local store also with symlinks followed, see
:func:`trialsynth.tenancy.tenant_path`): a key outside its tenant's prefix raises TenantPathError.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from trialsynth.hashing import sha256_bytes, sha256_file
from trialsynth.names import validate_name
from trialsynth.security.errors import SecurityError
from trialsynth.settings import Settings
from trialsynth.tenancy.lake import TenantPathError, tenant_path

if TYPE_CHECKING:  # loaded where frames are read, not with the Dagster definitions (issue 14's load budget)
    import pandas as pd
    import polars as pl

ZONES = ("lake", "raw")
PUBLISHING = "_PUBLISHING.json"  # a publish manifest: its prefix is being published (see the module docstring)
KEYS_FOLDER = "_keys"  # <tenant>/_keys/: the tenant's wrapped keys (trialsynth.security.sse), never under SSE-C
SSE_C_ALGORITHM = "AES256"  # the only algorithm S3's SSE-C accepts (AES-256)
SseCKeys = Callable[[str, "LakeStore"], bytes]  # (tenant, store) -> the tenant's 32-byte SSE-C key
_BAD_REQUEST = re.compile(r"HTTP status 400\b.*(HeadObject|GetObject)")
_NETWORK_ERROR = re.compile(r"NETWORK_CONNECTION|curlCode|couldn't connect|could not connect|connection refused",
                            re.IGNORECASE)


class IncompletePublishError(RuntimeError):
    """An object below a prefix whose publish has not completed: its objects may mix two drops."""


class LockedObjectError(PermissionError):
    """A write-once (Object Lock) object would be replaced or removed."""


def _publish_markers(key: str) -> list[str]:
    """The publish manifests that guard ``key``: one per folder between its partition and itself."""
    parts = key.split("/")
    return [f"{'/'.join(parts[:i])}/{PUBLISHING}" for i in range(3, len(parts))]


def tenant_key(tenant: str, key: str) -> str:
    """``key`` if it is a plain POSIX key under ``<tenant>/`` (no ``..``, ``.``, empty parts, leading
    ``/`` or backslashes); else TenantPathError."""
    tenant = validate_name(tenant, "tenant")
    parts = key.split("/")
    if "\\" in key or "\0" in key or any(p in ("", ".", "..") for p in parts) or parts[0] != tenant:
        raise TenantPathError(f"key {key!r} is not a plain key under tenant {tenant!r}'s prefix ({tenant}/...): "
                              "a job of one tenant never reads or writes another tenant's objects")
    return key


def sse_c_request_args(key: bytes) -> dict[str, Any]:
    """boto3 arguments that put an object under SSE-C with the 32-byte ``key`` and read it back (boto3
    base64-encodes the key and adds its MD5): for every PUT, GET and HEAD of the object."""
    return {"SSECustomerAlgorithm": SSE_C_ALGORITHM, "SSECustomerKey": key}


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    """``frame`` as the lake's Parquet (zstd, statistics: as :func:`trialsynth.ingest.bronze.write_parquet_atomic`)."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


class LakeStore:
    """Objects of one lake zone under ``root`` of a pyarrow ``filesystem``. See the module docstring."""

    def __init__(self, filesystem: pafs.FileSystem, root: str) -> None:
        self.filesystem = filesystem
        self.root = root.rstrip("/")

    # -- locations ---------------------------------------------------------------------------------
    def uri(self, key: str) -> str:
        """Where ``key`` lives, for people and lineage: an absolute path or ``s3://bucket/key``."""
        raise NotImplementedError

    @property
    def location(self) -> str:
        """The zone's root as dbt reads it ($TRIALSYNTH_LAKE_DIR): a folder or an S3/HTTP URL."""
        raise NotImplementedError

    def guard(self, tenant: str, key: str) -> str:
        """``key`` if it stays under ``tenant``'s prefix; else TenantPathError."""
        return tenant_key(tenant, key)

    def reader_headers(self, tenant: str) -> dict[str, str]:
        """HTTP headers a reader that fetches ``tenant``'s objects itself (dbt's ``s3()``) must send."""
        return {}

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    @contextmanager
    def _io(self) -> Iterator[None]:
        """Around every call to the filesystem: the S3 store names its endpoint when it is unreachable."""
        yield

    # -- objects -----------------------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none, IncompletePublishError when a publish of
        a folder holding it has not completed."""
        if not key.endswith(PUBLISHING):
            self.check_published(key)
        return self._read(key)

    def check_published(self, key: str) -> None:
        """IncompletePublishError when a publish manifest guards ``key`` (module docstring)."""
        for marker in _publish_markers(key):
            if self.exists(marker):
                self.check_marker(marker)

    def check_marker(self, marker: str) -> None:
        """IncompletePublishError when the publish manifest at ``marker`` is of a publish that has not
        completed (a completed or vanished one is fine)."""
        pending = self._pending(marker)
        if pending is not None:
            tenant, study, folder = marker.split("/", 2)
            raise IncompletePublishError(
                f"partition {tenant}|{study}: the publish of {folder.removesuffix('/' + PUBLISHING)}/ to "
                f"{self.uri(marker.removesuffix('/' + PUBLISHING))} started {pending.get('started_at', '?')} "
                f"and did not complete ({len(pending.get('writes', {}))} objects to write), so its objects may "
                "mix two drops and are not read; rerun the partition (`trialsynth drops retry`, or materialize "
                "the step that writes them) to republish it whole")

    def _read(self, key: str) -> bytes:
        if not self.exists(key):
            raise FileNotFoundError(f"{self.uri(key)} does not exist")
        with self._io(), self.filesystem.open_input_stream(self._path(key)) as stream:
            return stream.read()

    def write_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` at ``key`` (visible whole or not at all); returns its sha256."""
        with self._io(), self.filesystem.open_output_stream(self._path(key)) as stream:
            stream.write(data)
        return sha256_bytes(data)

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Store ``data`` at ``key`` only if nothing is there (one conditional write, so of two concurrent
        creators exactly one wins); False, writing nothing, when ``key`` exists."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        with self._io():
            return self.filesystem.get_file_info(self._path(key)).type == pafs.FileType.File

    def delete(self, key: str) -> None:
        """Remove the object (nothing when there is none)."""
        if self.exists(key):
            with self._io():
                self.filesystem.delete_file(self._path(key))

    def list(self, prefix: str = "", pattern: str = "*") -> list[str]:
        """Keys of every object below ``prefix`` (recursively) whose key matches the fnmatch ``pattern``."""
        selector = pafs.FileSelector(self._path(prefix), recursive=True, allow_not_found=True)
        start = len(self.root) + 1
        with self._io():
            infos = self.filesystem.get_file_info(selector)
        keys = [info.path[start:] for info in infos if info.type == pafs.FileType.File]
        return sorted(k for k in keys if fnmatch.fnmatchcase(k, pattern))

    def children(self, prefix: str = "") -> list[str]:
        """Names of the folders (common prefixes) directly below ``prefix``, hidden ones left out."""
        selector = pafs.FileSelector(self._path(prefix), recursive=False, allow_not_found=True)
        with self._io():
            infos = self.filesystem.get_file_info(selector)
        return sorted(info.base_name for info in infos
                      if info.type == pafs.FileType.Directory and not info.base_name.startswith("."))

    # -- formats -----------------------------------------------------------------------------------
    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def write_json(self, key: str, value: Any) -> str:
        return self.write_bytes(key, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def read_parquet(self, key: str) -> pl.DataFrame:
        import polars as pl

        return pl.read_parquet(io.BytesIO(self.read_bytes(key)))

    def read_pandas(self, key: str) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes(key)))

    def write_parquet(self, key: str, frame: pl.DataFrame) -> str:
        """Write ``frame`` as Parquet at ``key``; returns the file's sha256."""
        return self.write_bytes(key, parquet_bytes(frame))

    # -- local working copies ----------------------------------------------------------------------
    @contextmanager
    def working_copy(self, *prefixes: str, fetch: str = "*") -> Iterator[Path]:
        """A local folder laid out as the zone (``<folder>/<key>``) holding the objects below ``prefixes``
        whose key matches ``fetch``; what the block changes below ``prefixes`` is published on a clean exit."""
        with tempfile.TemporaryDirectory(prefix="trialsynth-lake-") as tmp:
            root = Path(tmp)
            fetched: dict[str, str] = {}
            for prefix in prefixes:
                for key in self.list(prefix, fetch):
                    if key.endswith(PUBLISHING):
                        continue
                    data = self._read(key)  # a pending publish is repaired by this copy's publish
                    (root / key).parent.mkdir(parents=True, exist_ok=True)
                    (root / key).write_bytes(data)
                    fetched[key] = sha256_bytes(data)
            yield root
            self._publish(root, prefixes, fetched)

    def _publish(self, root: Path, prefixes: tuple[str, ...], fetched: dict[str, str]) -> None:
        """Make the store below ``prefixes`` what the copy at ``root`` holds, guarded by publish manifests."""
        for prefix in prefixes:
            base = root / prefix
            files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink())
            present = {path.relative_to(root).as_posix(): sha256_file(path) for path in files}
            writes = {k: sha for k, sha in present.items() if fetched.get(k) != sha}
            removed = sorted(k for k in fetched if (k == prefix or k.startswith(f"{prefix}/")) and k not in present)
            if base.is_file():  # one object: one PUT, whole or not at all
                for key in writes:
                    self.write_bytes(key, base.read_bytes())
                continue
            marker = f"{prefix}/{PUBLISHING}"
            pending = self._pending(marker)
            if not writes and not removed:
                if pending is not None:  # the store already holds this (whole) copy: the publish is complete
                    self._finish(marker, [])
                continue
            self._write_marker(marker, {"prefix": prefix, "started_at": datetime.now(UTC).isoformat(),
                                        "writes": writes, "removes": removed, "repaired": self._repaired(marker)})
            # what the interrupted publish left behind (rare: only then one HEAD per key it meant to write)
            repairable = {k for k in (pending or {}).get("writes", {}) if k in writes and self.exists(k)}
            # index files (_domains.parquet, the raw zone's _manifest.json) after the files they describe
            for key in sorted(writes, key=lambda k: (k.rsplit("/", 1)[-1].startswith("_"), k)):
                self._put(key, (root / key).read_bytes(), replace=key in repairable)
            for key in removed:
                self.delete(key)
            self._finish(marker, sorted(repairable))

    def _marker(self, marker: str) -> dict | None:
        try:
            return json.loads(self._read(marker))
        except FileNotFoundError:
            return None
        except ValueError:  # being written: treat as pending
            return {}

    def _pending(self, marker: str) -> dict | None:
        """The publish manifest at ``marker`` of a publish that has not completed, or None."""
        found = self._marker(marker)
        return None if found is None or "completed_at" in found else found

    def _repaired(self, marker: str) -> list[str]:
        """Keys that reruns wrote again after interrupted publishes, as the manifest at ``marker`` records."""
        return (self._marker(marker) or {}).get("repaired", [])

    def _write_marker(self, marker: str, value: dict) -> None:
        self.write_bytes(marker, json.dumps(value, indent=2, sort_keys=True).encode())

    def _finish(self, marker: str, repaired: list[str]) -> None:
        """The publish of ``marker``'s folder is complete (``repaired``: the keys it wrote again)."""
        self._delete(marker)

    def _put(self, key: str, data: bytes, replace: bool) -> None:
        """One object of a publish; ``replace``: it may replace what an interrupted publish wrote."""
        self.write_bytes(key, data)

    def _delete(self, key: str) -> None:
        self.delete(key)


class LocalLakeStore(LakeStore):
    """A lake zone in a local folder (embedded default)."""

    def __init__(self, root: Path) -> None:
        self.root_path = Path(root).absolute()
        super().__init__(pafs.LocalFileSystem(), self.root_path.as_posix())

    def uri(self, key: str) -> str:
        return str(self.root_path / key)

    @property
    def location(self) -> str:
        return str(self.root_path)

    def guard(self, tenant: str, key: str) -> str:
        """As :meth:`LakeStore.guard`, and the path the OS would open (symlinks followed) must stay
        under ``<root>/<tenant>/`` too."""
        tenant_path(self.root_path, tenant, self.root_path / tenant_key(tenant, key))
        return key

    @contextmanager
    def _temp_beside(self, key: str, data: bytes) -> Iterator[tuple[Path, Path]]:
        """(temp file holding ``data``, flushed to disk, beside ``key``'s path; that path); removed after."""
        path = self.root_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            yield tmp, path
        finally:
            tmp.unlink(missing_ok=True)

    def write_bytes(self, key: str, data: bytes) -> str:
        """Written to a temp name beside ``key``, flushed to disk, then renamed over it."""
        with self._temp_beside(key, data) as (tmp, path):
            os.replace(tmp, path)
        return sha256_bytes(data)

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Written to a temp name, then hard-linked to ``key`` (the link fails when ``key`` exists)."""
        with self._temp_beside(key, data) as (tmp, path):
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        return True

    @contextmanager
    def working_copy(self, *prefixes: str, fetch: str = "*") -> Iterator[Path]:
        """The zone's folder itself: local writers already write in place, atomically."""
        self.root_path.mkdir(parents=True, exist_ok=True)
        yield self.root_path


class S3LakeStore(LakeStore):
    """A lake zone under ``<bucket>/<root>`` of S3 (or an S3-compatible server at ``endpoint_url``).

    ``retention_days`` > 0: a write-once zone in a bucket created with Object Lock (the raw zone): every
    object is written with COMPLIANCE retention for that many days and checked after the write; replacing
    or removing one raises LockedObjectError (publish manifests excepted: they are not lake data)."""

    def __init__(self, bucket: str, root: str, endpoint_url: str | None = None, region: str = "us-east-1",
                 retention_days: float = 0, sse_c: SseCKeys | None = None) -> None:
        if retention_days < 0:
            raise ValueError(f"retention_days must be >= 0, got {retention_days}")
        if retention_days and sse_c is not None:
            raise ValueError("SSE-C is for the lake zone; the write-once raw zone holds envelope objects")
        self.bucket, self.key_root, self.endpoint_url = bucket, root.strip("/"), endpoint_url
        self.region, self.retention_days, self.sse_c = region, retention_days, sse_c
        self._sse_c_keys: dict[str, bytes] = {}
        self._client: Any = None
        options: dict[str, Any] = {"region": region, "allow_bucket_creation": False, "allow_bucket_deletion": False}
        if endpoint_url:
            parts = urlsplit(endpoint_url)
            options |= {"endpoint_override": parts.netloc, "scheme": parts.scheme or "https"}
        key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if key_id and secret:  # else the AWS SDK's own chain (profile, IAM role)
            options |= {"access_key": key_id, "secret_key": secret, "session_token": os.environ.get("AWS_SESSION_TOKEN")}
        super().__init__(pafs.S3FileSystem(**options), f"{bucket}/{self.key_root}".rstrip("/"))

    @contextmanager
    def _io(self) -> Iterator[None]:
        """The AWS SDK's network errors (``curlCode``, NETWORK_CONNECTION) as ConnectionError naming the
        endpoint (``host:port``), so a run that loses the lake says which service stopped answering."""
        try:
            yield
        except Exception as exc:  # pyarrow raises OSError, botocore (locked writes) its own classes
            if isinstance(exc, OSError) and _BAD_REQUEST.search(str(exc)):  # pyarrow sends no SSE-C key
                raise OSError(f"{exc} (bucket {self.bucket}: an object stored with SSE-C is read only with its "
                              "tenant's key; lake.s3_sse_c must stay as it was when the lake was written)") from exc
            if isinstance(exc, FileNotFoundError | LockedObjectError) or not _NETWORK_ERROR.search(str(exc)):
                raise
            where = urlsplit(self.endpoint_url).netloc if self.endpoint_url else "AWS S3"
            raise ConnectionError(f"could not connect to the S3 lake at {where} (bucket {self.bucket}): "
                                  f"{str(exc).strip().splitlines()[-1]}") from exc

    def object_key(self, key: str) -> str:
        """The S3 object key of lake key ``key``."""
        return f"{self.key_root}/{key}" if self.key_root else key

    def client(self) -> Any:
        """A boto3 S3 client for this store's endpoint, made on first use (a fresh session: boto3's default
        one keeps the first credentials it resolved in the process); clients are thread-safe."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    @property
    def locked(self) -> bool:
        return self.retention_days > 0

    # -- SSE-C: the tenant's key on every request for its objects -----------------------------------
    def sse_c_key(self, key: str) -> bytes | None:
        """The SSE-C key ``key``'s object is stored with: its tenant's (asked of ``sse_c`` once per store
        and tenant), or None when the store uses no SSE-C and for the tenant's wrapped keys themselves
        (``<tenant>/_keys/``: envelope objects opened with the KEK, which must be readable without them)."""
        tenant, _, rest = key.partition("/")
        if self.sse_c is None or rest.startswith(f"{KEYS_FOLDER}/"):
            return None
        if tenant not in self._sse_c_keys:
            try:
                self._sse_c_keys[tenant] = self.sse_c(tenant, self)
            except SecurityError as exc:  # e.g. the tenant's KEK was destroyed: name the object asked for
                raise type(exc)(f"cannot read or write {self.uri(key)}: {exc}") from exc
        return self._sse_c_keys[tenant]

    def _sse_c_args(self, key: str) -> dict[str, Any]:
        found = self.sse_c_key(key)
        return {} if found is None else sse_c_request_args(found)

    def reader_headers(self, tenant: str) -> dict[str, str]:
        """The SSE-C request headers (S3's wire form) a reader that fetches ``tenant``'s objects itself
        (ClickHouse's ``s3()`` in dbt) must send; {} when the store uses no SSE-C."""
        found = self.sse_c_key(f"{validate_name(tenant, 'tenant')}/")
        if found is None:
            return {}
        prefix = "x-amz-server-side-encryption-customer-"
        return {f"{prefix}algorithm": SSE_C_ALGORITHM, f"{prefix}key": base64.b64encode(found).decode(),
                f"{prefix}key-MD5": base64.b64encode(hashlib.md5(found).digest()).decode()}

    def _refused(self, key: str, exc: Exception) -> Exception:
        """A refused S3 request for ``key`` as FileNotFoundError (none there) or an OSError naming the object."""
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code"))
        if code in ("NoSuchKey", "404", "NotFound"):
            return FileNotFoundError(f"{self.uri(key)} does not exist")
        how = f"with tenant {key.split('/')[0]}'s SSE-C key" if self.sse_c_key(key) else "without an SSE-C key"
        return OSError(f"{self.uri(key)}: the bucket refused the request {how} ({code}): {exc}")

    def _read(self, key: str) -> bytes:
        if self.sse_c is None:
            return super()._read(key)
        from botocore.exceptions import ClientError

        try:
            with self._io():
                return self.client().get_object(Bucket=self.bucket, Key=self.object_key(key),
                                                 **self._sse_c_args(key))["Body"].read()
        except ClientError as exc:
            raise self._refused(key, exc) from None

    def _put_object(self, key: str, data: bytes, **conditions: str) -> None:
        """One PUT of a plain (not write-once) object, under its tenant's SSE-C key when the store has one."""
        with self._io():
            self.client().put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data,
                                     ChecksumAlgorithm="SHA256", **self._sse_c_args(key), **conditions)

    def exists(self, key: str) -> bool:
        """A HEAD without the key: S3 answers 404 when nothing is there, and 400 for an SSE-C object (which
        needs its key for its metadata, not for its existence)."""
        if self.sse_c is None:
            return super().exists(key)
        from botocore.exceptions import ClientError

        try:
            with self._io():
                self.client().head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                return False
            if status == 400:
                return True
            raise self._refused(key, exc) from None
        return True

    def create_bytes(self, key: str, data: bytes) -> bool:
        """One PUT with ``If-None-Match: *``."""
        from botocore.exceptions import ClientError

        if self.locked:
            raise LockedObjectError(f"{self.uri(key)}: the write-once zone is written by publishes only")
        try:
            self._put_object(key, data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise self._refused(key, exc) from None
        return True

    # -- writes ------------------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes) -> str:
        """One PUT; in a write-once zone under COMPLIANCE retention, refused (LockedObjectError) when ``key``
        exists."""
        if not self.locked or key.endswith(PUBLISHING):
            return self._write_plain(key, data)
        self._put_locked(key, data, replace=False)
        return sha256_bytes(data)

    def _write_plain(self, key: str, data: bytes) -> str:
        if self.sse_c is None:
            return super().write_bytes(key, data)
        self._put_object(key, data)
        return sha256_bytes(data)

    def _put(self, key: str, data: bytes, replace: bool) -> None:
        if self.locked:
            self._put_locked(key, data, replace)
        else:
            self._write_plain(key, data)

    def _put_locked(self, key: str, data: bytes, replace: bool) -> None:
        from botocore.exceptions import ClientError

        from trialsynth.lineage.backends import ObjectExistsError, WormError, put_locked_object

        try:
            with self._io():
                put_locked_object(self.client(), self.bucket, self.object_key(key), data, self.retention_days,
                                  if_none_match=not replace)
        except ObjectExistsError as exc:
            raise LockedObjectError(f"{self.uri(key)} exists and is under Object Lock (the raw zone is write-once): "
                                    "it is never replaced") from exc
        except ClientError as exc:  # e.g. InvalidRequest: a bucket without Object Lock refuses the retention
            raise WormError(f"{self.uri(key)}: the bucket refused a write with Object Lock retention "
                            f"({exc.response.get('Error', {}).get('Code')}); the raw zone needs a bucket created with "
                            "Object Lock enabled (lake.s3_raw_bucket), or lake.raw_retention_days: 0") from exc

    def delete(self, key: str) -> None:
        if self.locked:
            raise LockedObjectError(f"{self.uri(key)} is under Object Lock (the raw zone is write-once): "
                                    "it is never removed")
        if self.sse_c is None:
            return super().delete(key)
        with self._io():  # pyarrow's delete would HEAD the object first (refused without its SSE-C key)
            self.client().delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def _finish(self, marker: str, repaired: list[str]) -> None:
        """A write-once zone keeps its publish manifests, marked completed (its bucket may refuse every
        delete, see :func:`trialsynth.lineage.backends.protect_bucket`), with the keys reruns wrote again."""
        if not self.locked:
            return super()._finish(marker, repaired)
        self._write_marker(marker, {"completed_at": datetime.now(UTC).isoformat(),
                                    "repaired": sorted(set(self._repaired(marker)) | set(repaired))})

    def lock_problems(self, prefix: str = "") -> list[str]:
        """What is wrong, below ``prefix``, with a write-once zone's objects: deleted (a delete marker over
        the locked version), written over (newer versions; those a rerun wrote after an interrupted publish,
        as its manifest records, excepted), or the original version without unexpired COMPLIANCE retention.
        Empty when nothing is."""
        from botocore.exceptions import ClientError

        client, now = self.client(), datetime.now(UTC)
        versions: dict[str, list[dict]] = {}
        markers: dict[str, int] = {}
        with self._io():
            for page in client.get_paginator("list_object_versions").paginate(Bucket=self.bucket,
                                                                                Prefix=self.object_key(prefix)):
                for version in page.get("Versions", []):  # newest first within a key
                    versions.setdefault(version["Key"], []).append(version)
                for marker in page.get("DeleteMarkers", []):
                    markers[marker["Key"]] = markers.get(marker["Key"], 0) + 1
        start = len(self.object_key(""))
        repaired = {k for m in versions if m.endswith(PUBLISHING) for k in self._repaired(m[start:])}
        problems = []
        for object_key in sorted(set(versions) | set(markers)):
            key, where = object_key[start:], f"s3://{self.bucket}/{object_key}"
            if object_key.endswith(("/", PUBLISHING)):
                continue
            if markers.get(object_key):
                problems.append(f"{where}: deleted (a delete marker hides its locked version)")
            found = versions.get(object_key, [])
            if len(found) > 1 and key not in repaired:
                problems.append(f"{where}: written over ({len(found) - 1} newer version(s); the first is kept, locked)")
            if found:
                try:
                    retention = client.get_object_retention(Bucket=self.bucket, Key=object_key,
                                                            VersionId=found[-1]["VersionId"]).get("Retention", {})
                except ClientError:  # no retention on it (a bucket without Object Lock)
                    retention = {}
                if retention.get("Mode") != "COMPLIANCE" or retention.get("RetainUntilDate", now) <= now:
                    problems.append(f"{where}: no unexpired COMPLIANCE retention ({retention or 'none'})")
        return problems

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    @property
    def location(self) -> str:
        if self.endpoint_url:  # ClickHouse's s3() takes the endpoint's URL, path-style
            return f"{self.endpoint_url.rstrip('/')}/{self.root}"
        return f"s3://{self.root}"


def open_lake_store(settings: Settings, zone: str = "lake") -> LakeStore:
    """The store of ``zone`` that ``settings.lake`` chooses: ``lake`` (bronze, quarantine, analytics) or
    ``raw`` (the raw zone). Cheap (about a millisecond on S3): built per use, so it always follows the
    current settings and credentials."""
    if zone not in ZONES:
        raise ValueError(f"zone {zone!r} is not known (expected one of {', '.join(ZONES)})")
    lake = settings.lake
    if lake.store == "local":
        return LocalLakeStore(settings.lake_dir if zone == "lake" else settings.raw_dir)
    if lake.store == "s3":
        if zone == "raw":
            return S3LakeStore(lake.raw_bucket, f"{lake.s3_prefix}/raw".lstrip("/"), lake.s3_endpoint_url, lake.s3_region,
                               retention_days=lake.raw_retention_days)
        sse_c = None
        if lake.s3_sse_c:
            from trialsynth.security.sse import store_sse_c_keys  # cryptography only when SSE-C is on

            sse_c = store_sse_c_keys(settings)
        return S3LakeStore(lake.s3_bucket, f"{lake.s3_prefix}/lake".lstrip("/"), lake.s3_endpoint_url, lake.s3_region,
                           sse_c=sse_c)
    raise ValueError(f"lake.store {lake.store!r} is not known (expected 'local' or 's3')")


def open_lake_stores(settings: Settings) -> dict[str, LakeStore]:
    """Zone name -> :func:`open_lake_store` of every zone (``lake``, ``raw``)."""
    return {zone: open_lake_store(settings, zone) for zone in ZONES}
