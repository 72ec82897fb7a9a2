"""Tenant encryption as one service: encrypt / decrypt objects, rotate, rewrap, destroy, check.

The KMS backend comes from ``settings.security.kms`` only. Encrypted objects live under
``<raw>/<tenant>/`` and ``<lake>/<tenant>/`` and say in their header which key opens them. Each
KEK version used in a data directory leaves a *canary* there, ``<lake>/_keycheck/<tenant>/v<N>.canary``:
a known text encrypted like any object. :func:`check_keys` opens every canary, so a keyring or KMS
that does not match the data (lost, replaced, truncated key, wrong region) stops the process
before it writes anything.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from trialsynth.names import validate_name
from trialsynth.security.envelope import (
    MAGIC,
    DecryptingReader,
    EnvelopeHeader,
    encrypt_stream,
    is_encrypted,
    iter_plaintext,
    open_header,
    read_header,
    rewrap_bytes,
    rewrap_header,
)
from trialsynth.security.errors import (
    DecryptionError,
    KeyCheckError,
    KeyDestroyedError,
    KeyNotFoundError,
    SecurityError,
)
from trialsynth.security.kms import KeyId, KeyManager, KeyVersion
from trialsynth.settings import Settings, get_settings

if TYPE_CHECKING:
    from trialsynth.storage import LakeStore

CANARY_DIR = "_keycheck"  # in the lake; "_" keeps it apart from tenant names


def keyring_path(settings: Settings) -> Path:
    """The local keyring file: ``security.keyring_path`` or ``<data dir's parent>/.trialsynth-keys/keyring.json``."""
    configured = settings.security.keyring_path
    if configured is None:
        return settings.data_path.parent / ".trialsynth-keys" / "keyring.json"
    return configured if configured.is_absolute() else settings.root / configured


def get_kms(settings: Settings | None = None) -> KeyManager:
    """The KMS backend the settings select (``security.kms``: local, aws or vault)."""
    settings = settings or get_settings()
    sec = settings.security
    if sec.kms == "local":
        from trialsynth.security.keyring import LocalKeyring

        return LocalKeyring(keyring_path(settings))
    if sec.kms == "aws":
        from trialsynth.security.aws_kms import AwsKms

        return AwsKms(region=sec.aws_region, endpoint_url=sec.aws_endpoint_url, alias_prefix=sec.aws_key_alias_prefix)
    from trialsynth.security.vault_transit import VaultTransit

    return VaultTransit(sec.vault_addr, os.environ.get(sec.vault_token_env, ""), mount=sec.vault_transit_mount,
                        key_prefix=sec.vault_key_prefix)


def _canary_text(key_id: KeyId) -> bytes:
    return f"trialsynth key canary {key_id}".encode()


@dataclass
class RewrapReport:
    """Outcome of :meth:`KeyService.rewrap` for one tenant (objects: local paths, or URIs of an object store)."""

    key_id: KeyId  # the version every object now names
    rewrapped: list[Path | str] = field(default_factory=list)
    already_current: int = 0
    failed: list[tuple[Path | str, str]] = field(default_factory=list)


@dataclass
class TenantStatus:
    """Key versions of a tenant and how many encrypted objects each one protects."""

    tenant: str
    versions: list[KeyVersion]
    objects: dict[KeyId, int]
    current: KeyId | None
    unreadable_headers: list[Path | str] = field(default_factory=list)  # envelope magic, but a corrupt header


class KeyService:
    """Encryption of tenant objects with the settings' KMS (``kms`` overrides it, e.g. in tests)."""

    def __init__(self, settings: Settings | None = None, kms: KeyManager | None = None) -> None:
        self.settings = settings or get_settings()
        self.kms = kms or get_kms(self.settings)

    # -- paths ---------------------------------------------------------------------------------
    def logical_path(self, path: str | Path) -> str:
        """``path`` relative to the data directory, POSIX style: the default associated data."""
        path, root = Path(path).absolute(), self.settings.data_path.absolute()
        if not path.is_relative_to(root):
            raise ValueError(f"{path} is not under the data directory {root}: pass aad explicitly")
        return path.relative_to(root).as_posix()

    def canary_path(self, key_id: KeyId) -> Path:
        return self.settings.lake_dir / CANARY_DIR / key_id.tenant / f"v{key_id.version}.canary"

    def object_roots(self, tenant: str) -> list[Path]:
        """Folders holding ``tenant``'s objects: its raw zone and its lake."""
        validate_name(tenant, "tenant")
        return [self.settings.raw_dir / tenant, self.settings.lake_dir / tenant]

    def encrypted_objects(self, tenant: str) -> Iterator[Path]:
        """Every file of ``tenant`` that starts with the envelope magic (temporary dot-files skipped)."""
        for root in self.object_roots(tenant):
            for path in sorted(root.rglob("*")) if root.is_dir() else []:
                if path.is_file() and not path.is_symlink() and not path.name.startswith(".") and is_encrypted(path):
                    yield path

    def store_objects(self, tenant: str, unreadable: list[tuple[str, str]] | None = None,
                      sse_c_only: list[str] | None = None) -> Iterator[tuple[LakeStore, str, bytes]]:
        """(store, key, bytes) of every encrypted object of ``tenant`` in an object-store lake
        (``lake.store: s3``: raw zone and lake zone). Nothing for the local store, whose objects are
        the files :meth:`encrypted_objects` finds. Reads each object of the tenant whole; an object the
        store cannot read (e.g. refused by the bucket) is appended to ``unreadable`` as (uri, reason)
        instead; an object that is no envelope but stored under the tenant's SSE-C key (the lake's Parquet)
        to ``sse_c_only``."""
        if self.settings.lake.store == "local":
            return
        from trialsynth.storage import open_lake_stores  # boto/pyarrow S3 only when the lake is in S3

        for store in open_lake_stores(self.settings).values():
            for key in store.list(validate_name(tenant, "tenant")):
                try:
                    blob = store.read_bytes(key)
                except (OSError, SecurityError) as exc:  # refused by the bucket; an SSE-C key that cannot be opened
                    if unreadable is not None:
                        unreadable.append((store.uri(key), f"not readable through the lake store, so not checked "
                                                           f"for an envelope: {exc}"))
                    continue
                if blob.startswith(MAGIC):
                    yield store, key, blob
                elif sse_c_only is not None and store.reader_headers(tenant):
                    sse_c_only.append(store.uri(key))

    def _objects_by_key(self, tenant: str, sse_c_only: list[str] | None = None
                        ) -> tuple[Counter[KeyId], list[Path | str]]:
        """How many objects each key id protects, and the objects whose header cannot be read (``sse_c_only``:
        see :meth:`store_objects`)."""
        counts: Counter[KeyId] = Counter()
        corrupt: list[Path | str] = []
        found = [(path, path) for path in self.encrypted_objects(tenant)]
        found += [(store.uri(key), blob) for store, key, blob in self.store_objects(tenant, sse_c_only=sse_c_only)]
        for name, source in found:
            try:
                counts[read_header(source, str(name)).key_id] += 1
            except DecryptionError:
                corrupt.append(name)
        return counts, corrupt

    # -- keys ----------------------------------------------------------------------------------
    def _write_canary(self, key_id: KeyId) -> None:
        path = self.canary_path(key_id)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = self._encrypt_to_bytes(_canary_text(key_id), key_id, self.logical_path(path))
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(blob)
        os.replace(tmp, path)

    def current_key(self, tenant: str) -> KeyId:
        """The version new writes of ``tenant`` use; the local keyring creates ``v1`` on first use."""
        validate_name(tenant, "tenant")
        try:
            key_id = self.kms.current(tenant)
        except KeyDestroyedError:
            raise
        except KeyNotFoundError:
            if not self.kms.creates_keys_on_first_use:
                raise
            key_id = self.kms.create_version(tenant)
        self._write_canary(key_id)
        return key_id

    def rotate(self, tenant: str) -> KeyId:
        """Create version n+1 of ``tenant``'s KEK (v1 for a new tenant); new writes use it at once.
        In an S3 deployment this also provisions the tenant's SSE-C key once (:mod:`trialsynth.security.sse`)."""
        validate_name(tenant, "tenant")
        key_id = self.kms.create_version(tenant)
        self._write_canary(key_id)
        if self.settings.lake.store == "s3":
            from trialsynth.artifacts import lake_store
            from trialsynth.security.sse import tenant_sse_c_key

            tenant_sse_c_key(tenant, self, lake_store(self.settings), create=True)
        return key_id

    def rewrap(self, tenant: str) -> RewrapReport:
        """Re-wrap every data key of ``tenant`` to the newest version; object bodies are not touched."""
        report = RewrapReport(self.kms.current(tenant))
        for path in self.encrypted_objects(tenant):
            try:
                if read_header(path).key_id == report.key_id:
                    report.already_current += 1
                    continue
                rewrap_header(path, self.kms, report.key_id)
                report.rewrapped.append(path)
            except (SecurityError, OSError) as exc:
                report.failed.append((path, str(exc)))
        for store, key, blob in self.store_objects(tenant, report.failed):
            name = store.uri(key)
            try:
                if read_header(blob, name).key_id == report.key_id:
                    report.already_current += 1
                    continue
                store.write_bytes(key, rewrap_bytes(blob, self.kms, report.key_id, name))  # one atomic PUT
                report.rewrapped.append(name)
            except (SecurityError, OSError) as exc:
                report.failed.append((name, str(exc)))
        return report

    def destroy(self, tenant: str, up_to: int | None = None) -> tuple[list[KeyId], int]:
        """Destroy ``tenant``'s versions ``<= up_to`` (all when None): crypto-shredding.

        Returns the destroyed ids and how many encrypted objects became unreadable. Their
        ciphertext stays on disk (delete it separately if the retention policy says so).
        """
        validate_name(tenant, "tenant")
        # counted before: afterwards the S3 lake's SSE-C objects cannot even be read
        sse_c_only: list[str] = []
        counts, _corrupt = self._objects_by_key(tenant, sse_c_only)
        sse_c_wrap = self._sse_c_key_id(tenant)
        destroyed = self.kms.destroy(tenant, up_to)
        for key_id in destroyed:
            self.canary_path(key_id).unlink(missing_ok=True)
        # the lake's Parquet goes with the KEK version that wraps the tenant's SSE-C key
        return destroyed, sum(counts[k] for k in destroyed) + (len(sse_c_only) if sse_c_wrap in destroyed else 0)

    def _sse_c_key_id(self, tenant: str) -> KeyId | None:
        """The KEK version wrapping ``tenant``'s SSE-C key in an S3 lake (None: it has none)."""
        if self.settings.lake.store != "s3":
            return None
        from trialsynth.artifacts import lake_store
        from trialsynth.security.sse import sse_c_key_location

        store = lake_store(self.settings)
        location = sse_c_key_location(tenant)
        return read_header(store.read_bytes(location), store.uri(location)).key_id if store.exists(location) else None

    def status(self, tenant: str | None = None) -> list[TenantStatus]:
        """Versions and object counts of one tenant, or of every tenant the KMS or data dir knows."""
        tenants = [tenant] if tenant else sorted(set(self.kms.tenants()) | set(self._canary_tenants()))
        out = []
        for t in tenants:
            versions = self.kms.versions(t)
            active = [v.key_id for v in versions if v.state == "active"]
            counts, corrupt = self._objects_by_key(t)
            out.append(TenantStatus(t, versions, dict(counts), max(active) if active else None, corrupt))
        return out

    def _canary_tenants(self) -> list[str]:
        root = self.settings.lake_dir / CANARY_DIR
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def check(self) -> list[KeyId]:
        """Refuse to start unless every configured key exists, is AES-256 and opens its canary.

        Checks the tenants in ``security.tenants`` (the local keyring creates a new tenant's ``v1``;
        other KMSs need ``keys rotate``) and every tenant/version with a canary in this data dir.
        Returns the key ids checked; raises KeyCheckError naming the key and what to do.
        """
        checked = []
        configured = [validate_name(t, "tenant") for t in self.settings.security.tenants]
        try:
            self.kms.tenants()  # reach the key store at all: keyring permissions, AWS credentials, Vault token
        except SecurityError as exc:
            raise KeyCheckError(str(exc)) from exc
        for tenant in sorted(set(configured) | set(self._canary_tenants())):
            canaries = sorted(p for p in (self.settings.lake_dir / CANARY_DIR / tenant).glob("v*.canary")
                              if p.stem[1:].isdigit())
            for canary in canaries:
                key_id = KeyId(tenant, int(canary.stem[1:]))
                self._check_canary(key_id, canary)
                checked.append(key_id)
            if tenant in configured:
                checked.append(self._check_configured(tenant, first_run=not canaries))
        return sorted(set(checked))

    def _check_configured(self, tenant: str, first_run: bool) -> KeyId:
        """The current key of a configured tenant, verified; a fresh local keyring gets ``v1``."""
        try:
            key_id = self.kms.current(tenant)
        except KeyDestroyedError as exc:
            raise KeyCheckError(f"configured tenant {tenant!r}: {exc}") from exc
        except KeyNotFoundError as exc:
            if not (first_run and self.kms.creates_keys_on_first_use):
                raise KeyCheckError(f"configured tenant {tenant!r}: {exc}") from exc
            key_id = self.kms.create_version(tenant)
        self.kms.verify(key_id)
        self._write_canary(key_id)
        return key_id

    def _check_canary(self, key_id: KeyId, canary: Path) -> None:
        where = self.kms.describe()
        try:
            self.kms.verify(key_id)
            plain = self.decrypt_bytes(canary.read_bytes(), tenant=key_id.tenant, aad=self.logical_path(canary),
                                       name=str(canary))
        except KeyCheckError as exc:
            raise KeyCheckError(
                f"{exc} — this data directory holds objects encrypted with {key_id} (canary {canary}): "
                f"restore that key in {where}, or point settings.security at the key store this data was written "
                "with (if the key was destroyed on purpose, delete that canary)"
            ) from exc
        except SecurityError as exc:
            raise KeyCheckError(
                f"key {key_id} in {where} cannot decrypt its canary {canary}: the key material differs from the "
                f"one this data was encrypted with (keyring replaced, or restored from the wrong backup) ({exc})"
            ) from exc
        if plain != _canary_text(key_id):
            raise KeyCheckError(f"canary {canary} of key {key_id} decrypted to unexpected text: restore it from backup")

    # -- objects -------------------------------------------------------------------------------
    def _encrypt_to_bytes(self, data: bytes, key_id: KeyId, aad: str) -> bytes:
        out = io.BytesIO()
        encrypt_stream(io.BytesIO(data), out, self.kms, key_id, aad, self.settings.security.segment_size)
        return out.getvalue()

    def encrypt_bytes(self, data: bytes, tenant: str, aad: str) -> bytes:
        """Encrypt ``data`` for ``tenant`` as the object ``aad`` (its logical path)."""
        return self._encrypt_to_bytes(data, self.current_key(tenant), aad)

    def decrypt_bytes(self, blob: bytes, tenant: str, aad: str | None, name: str = "<bytes>") -> bytes:
        """Inverse of :meth:`encrypt_bytes`; ``aad=None`` skips the path check (tenant still checked)."""
        fh = io.BytesIO(blob)
        header, data_key = open_header(fh, self.kms, tenant, aad, name)
        return b"".join(iter_plaintext(fh, header, data_key, self.kms, name))

    def encrypt_stream(self, src: BinaryIO, dst: BinaryIO, tenant: str, aad: str) -> EnvelopeHeader:
        """Encrypt everything readable from ``src`` into the open binary file ``dst`` (for callers that
        already hold descriptors, e.g. the raw zone's no-follow copy); ``aad`` as in :meth:`encrypt_file`."""
        return encrypt_stream(src, dst, self.kms, self.current_key(tenant), aad, self.settings.security.segment_size)

    def encrypt_file(self, src: str | Path, dst: str | Path, tenant: str, aad: str) -> EnvelopeHeader:
        """Encrypt file ``src`` into ``dst`` (streamed; ``dst`` appears complete or not at all).

        ``aad`` must be the object's final logical path (``self.logical_path(final_dst)``), also
        when ``dst`` is a temporary location that is renamed later.
        """
        dst = Path(dst)
        tmp = dst.with_name(f".{dst.name}.enc-{os.getpid()}")
        try:
            with open(src, "rb") as fin, open(tmp, "xb") as fout:
                header = self.encrypt_stream(fin, fout, tenant, aad)
                fout.flush()
                os.fsync(fout.fileno())
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        return header

    def open_decrypted(self, path: str | Path, tenant: str, aad: str | None = None) -> BinaryIO:
        """Binary reader of ``path``'s verified plaintext; ``aad`` defaults to its logical path."""
        aad = self.logical_path(path) if aad is None else aad
        return io.BufferedReader(DecryptingReader(path, self.kms, tenant, aad), buffer_size=1 << 20)

    def decrypt_file(self, src: str | Path, dst: str | Path, tenant: str, aad: str | None = None) -> Path:
        """Decrypt ``src`` into ``dst``; ``dst`` appears only if every segment verified."""
        dst = Path(dst)
        tmp = dst.with_name(f".{dst.name}.dec-{os.getpid()}")
        try:
            with self.open_decrypted(src, tenant, aad) as fin, open(tmp, "xb") as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        return dst


def check_keys(settings: Settings | None = None, kms: KeyManager | None = None) -> list[KeyId]:
    """Startup gate for Definitions load, the CLI and the API: see :meth:`KeyService.check`."""
    return KeyService(settings, kms).check()


def encrypt_file(src: str | Path, dst: str | Path, tenant: str, aad: str, *, settings: Settings | None = None) -> EnvelopeHeader:
    """Encrypt ``src`` into ``dst`` for ``tenant`` with the settings' KMS (see :meth:`KeyService.encrypt_file`)."""
    return KeyService(settings).encrypt_file(src, dst, tenant, aad)


def open_decrypted(path: str | Path, tenant: str, aad: str | None = None, *, settings: Settings | None = None) -> BinaryIO:
    """Verified plaintext reader of an encrypted object (see :meth:`KeyService.open_decrypted`)."""
    return KeyService(settings).open_decrypted(path, tenant, aad)
