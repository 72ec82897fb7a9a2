"""Envelope encryption of one object (file or bytes) with AES-256-GCM in authenticated segments.

Format (all integers big-endian)::

    b"TSENC" | format u8 (=1) | fixed_len u32 | fixed JSON | slot_len u32 | key-slot JSON | segments

- *fixed* header (never changes): ``alg``, ``tenant``, ``aad`` (the object's logical path),
  ``segment_size`` and ``nonce_prefix``. Its exact bytes are the associated data of every segment
  and (hashed) the context of the wrapped data key, so an object copied to another tenant or path,
  or a header edited in any way, fails to open.
- *key slot* (rewritten by rewrap): ``kms``, ``key_id`` (``tenant/vN``: the KEK version) and
  ``wrapped_key``. Rewrapping replaces only the slot; the segments stay byte-identical.
- *segments*: the plaintext cut into ``segment_size`` pieces, each sealed with AES-256-GCM
  (16-byte tag) under a random per-object data key, nonce = ``nonce_prefix`` (7 random bytes) ||
  segment counter (u32) || last-segment flag (u8).

Why hand-written: ``cryptography`` (50.x, installed here) offers only one-shot AEADs (AESGCM and
friends), no streaming AEAD, and one-shot AES-GCM would need a whole raw file (hundreds of MB) in
memory and could not release any plaintext before the last byte was checked. This is the STREAM
construction (Hoang, Reyhanitabar, Rogaway, Vizar 2015; also used by Tink and age): the counter in
the nonce stops segments being reordered or dropped, the last-segment flag stops truncation at a
segment boundary, and a plaintext segment is released only after its tag verified.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trialsynth.security.errors import DecryptionError, SecurityError, UnwrapError
from trialsynth.security.kms import DATA_KEY_BYTES, KeyId, KeyManager

MAGIC = b"TSENC"
FORMAT_VERSION = 1
ALGORITHM = "AES-256-GCM"
TAG_BYTES = 16
NONCE_PREFIX_BYTES = 7
DEFAULT_SEGMENT_SIZE = 1 << 20
_MAX_HEADER = 1 << 16
_WRAP_CONTEXT = b"trialsynth-dek-v1\x00"


@dataclass(frozen=True)
class EnvelopeHeader:
    """What an encrypted object says about itself (readable without any key)."""

    format_version: int
    algorithm: str
    tenant: str
    aad: str
    segment_size: int
    nonce_prefix: bytes
    kms: str
    key_id: KeyId
    wrapped_key: bytes
    fixed_bytes: bytes  # the exact fixed-header JSON: associated data of every segment
    body_offset: int  # where the first segment starts

    @property
    def wrap_context(self) -> bytes:
        return wrap_context(self.fixed_bytes)


def wrap_context(fixed_bytes: bytes) -> bytes:
    """Context the KMS authenticates with the wrapped data key: binds it to this object's header."""
    return _WRAP_CONTEXT + hashlib.sha256(fixed_bytes).digest()


def _json(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _segment_aad(fixed_bytes: bytes) -> bytes:
    return MAGIC + bytes([FORMAT_VERSION]) + fixed_bytes


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


def _slot_bytes(kms: str, key_id: KeyId, wrapped: bytes) -> bytes:
    return _json({"kms": kms, "key_id": str(key_id), "wrapped_key": base64.b64encode(wrapped).decode()})


def _header_bytes(fixed_bytes: bytes, slot: bytes) -> bytes:
    return (MAGIC + bytes([FORMAT_VERSION]) + struct.pack(">I", len(fixed_bytes)) + fixed_bytes
            + struct.pack(">I", len(slot)) + slot)


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        chunk = fh.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_header(source: str | Path | bytes | BinaryIO, name: str | None = None) -> EnvelopeHeader:
    """Parse the header of an encrypted object (a path, its bytes, or a binary file positioned at its start).

    Raises DecryptionError naming the object when it is not a trialsynth envelope or is truncated.
    """
    if isinstance(source, bytes):
        return read_header(io.BytesIO(source), name or "<bytes>")
    if isinstance(source, (str, Path)):
        with open(source, "rb") as fh:
            return read_header(fh, str(source))
    obj = name or getattr(source, "name", "<stream>")
    prefix = _read_exact(source, len(MAGIC) + 5)
    if prefix[: len(MAGIC)] != MAGIC:
        raise DecryptionError(f"{obj} is not a trialsynth encrypted object (no {MAGIC.decode()} header)")
    if len(prefix) < len(MAGIC) + 5:
        raise DecryptionError(f"{obj}: the encryption header is truncated")
    fmt, fixed_len = prefix[len(MAGIC)], struct.unpack(">I", prefix[len(MAGIC) + 1 :])[0]
    if fmt != FORMAT_VERSION:
        raise DecryptionError(f"{obj} uses envelope format {fmt}; this trialsynth reads format {FORMAT_VERSION}")
    if not 0 < fixed_len <= _MAX_HEADER:
        raise DecryptionError(f"{obj}: the encryption header is truncated or corrupt")
    fixed_bytes = _read_exact(source, fixed_len)
    slot_len_raw = _read_exact(source, 4)
    slot_len = struct.unpack(">I", slot_len_raw)[0] if len(slot_len_raw) == 4 else 0
    slot_bytes = _read_exact(source, slot_len) if 0 < slot_len <= _MAX_HEADER else b""
    if len(fixed_bytes) != fixed_len or not slot_bytes or len(slot_bytes) != slot_len:
        raise DecryptionError(f"{obj}: the encryption header is truncated or corrupt")
    try:
        fixed, slot = json.loads(fixed_bytes), json.loads(slot_bytes)
        header = EnvelopeHeader(
            format_version=fmt,
            algorithm=fixed["alg"],
            tenant=fixed["tenant"],
            aad=fixed["aad"],
            segment_size=int(fixed["segment_size"]),
            nonce_prefix=base64.b64decode(fixed["nonce_prefix"], validate=True),
            kms=slot["kms"],
            key_id=KeyId.parse(slot["key_id"]),
            wrapped_key=base64.b64decode(slot["wrapped_key"], validate=True),
            fixed_bytes=fixed_bytes,
            body_offset=len(MAGIC) + 5 + fixed_len + 4 + slot_len,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DecryptionError(f"{obj}: the encryption header is corrupt ({exc})") from exc
    if header.algorithm != ALGORITHM or len(header.nonce_prefix) != NONCE_PREFIX_BYTES or header.segment_size < 1:
        raise DecryptionError(f"{obj}: unsupported or corrupt header (alg {header.algorithm!r})")
    return header


def is_encrypted(path: str | Path) -> bool:
    """True when ``path`` starts with the envelope magic (cheap: reads 5 bytes)."""
    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def encrypt_stream(
    src: BinaryIO, dst: BinaryIO, kms: KeyManager, key_id: KeyId, aad: str,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> EnvelopeHeader:
    """Encrypt everything readable from ``src`` into ``dst`` under a fresh data key wrapped by ``key_id``.

    ``aad`` is the object's logical path (e.g. ``raw/acme/S1/d1/v1/dm.csv``): the object opens only
    when read back as that path of that tenant. Memory use is about two segments.
    """
    if segment_size < 1:
        raise ValueError(f"segment_size must be positive, got {segment_size}")
    prefix = os.urandom(NONCE_PREFIX_BYTES)
    fixed_bytes = _json({
        "alg": ALGORITHM, "tenant": key_id.tenant, "aad": aad, "segment_size": segment_size,
        "nonce_prefix": base64.b64encode(prefix).decode(),
    })
    data_key = AESGCM.generate_key(bit_length=8 * DATA_KEY_BYTES)
    wrapped = kms.wrap(key_id, data_key, wrap_context(fixed_bytes))
    header_bytes = _header_bytes(fixed_bytes, _slot_bytes(kms.backend, key_id, wrapped))
    dst.write(header_bytes)
    aead, seg_aad = AESGCM(data_key), _segment_aad(fixed_bytes)
    current, counter = _read_exact(src, segment_size), 0
    while True:
        following = _read_exact(src, segment_size) if len(current) == segment_size else b""
        last = not following
        dst.write(aead.encrypt(_nonce(prefix, counter, last), current, seg_aad))
        if last:
            break
        current, counter = following, counter + 1
    return read_header(io.BytesIO(header_bytes), "<new object>")


def _describe_key(header: EnvelopeHeader, kms: KeyManager) -> str:
    return f"key {header.key_id}, {kms.describe()}"


def open_header(fh: BinaryIO, kms: KeyManager, tenant: str, aad: str | None, name: str) -> tuple[EnvelopeHeader, bytes]:
    """Read and check the header of ``fh`` against the expected tenant / path; unwrap the data key."""
    header = read_header(fh, name)
    if header.tenant != tenant:
        raise DecryptionError(
            f"{name} belongs to tenant {header.tenant!r} (key {header.key_id}), not {tenant!r}: "
            "refusing to open another tenant's object"
        )
    if aad is not None and header.aad != aad:
        raise DecryptionError(
            f"{name} was encrypted as {header.aad!r} but is being opened as {aad!r} (key {header.key_id}): "
            "an encrypted object cannot be moved or copied to another path"
        )
    if header.key_id.tenant != tenant:
        raise DecryptionError(f"{name}: key {header.key_id} is not a key of tenant {tenant!r}; the header was altered")
    try:
        data_key = kms.unwrap(header.key_id, header.wrapped_key, header.wrap_context)
    except UnwrapError as exc:
        raise DecryptionError(f"cannot decrypt {name}: {exc}") from exc
    except SecurityError as exc:  # unknown / destroyed key, bad keyring: name the object too
        raise type(exc)(f"cannot decrypt {name}: {exc}") from exc
    if len(data_key) != DATA_KEY_BYTES:
        raise DecryptionError(f"cannot decrypt {name}: the unwrapped data key has the wrong length ({_describe_key(header, kms)})")
    return header, data_key


def iter_plaintext(fh: BinaryIO, header: EnvelopeHeader, data_key: bytes, kms: KeyManager, name: str) -> Iterator[bytes]:
    """Yield verified plaintext segments of ``fh`` (positioned at the body). Raises DecryptionError
    on the first segment that fails, and at the end if the final segment is missing."""
    aead, seg_aad = AESGCM(data_key), _segment_aad(header.fixed_bytes)
    full = header.segment_size + TAG_BYTES
    counter, current = 0, _read_exact(fh, full)
    while True:
        if len(current) < TAG_BYTES:
            raise DecryptionError(
                f"cannot decrypt {name}: ciphertext is truncated (segment {counter} is missing or cut short; "
                f"{_describe_key(header, kms)})"
            )
        following = _read_exact(fh, full) if len(current) == full else b""
        last = not following
        try:
            yield aead.decrypt(_nonce(header.nonce_prefix, counter, last), current, seg_aad)
        except InvalidTag:
            reason = f"segment {counter} failed authentication: the object is corrupted or was tampered with"
            if last:
                try:
                    aead.decrypt(_nonce(header.nonce_prefix, counter, False), current, seg_aad)
                    reason = f"ciphertext is truncated after segment {counter} (its final segment is missing)"
                except InvalidTag:
                    pass
            raise DecryptionError(f"cannot decrypt {name}: {reason} ({_describe_key(header, kms)})") from None
        if last:
            return
        current, counter = following, counter + 1


class DecryptingReader(io.RawIOBase):
    """Read-only binary stream of an object's plaintext; every byte it returns was authenticated.

    A truncated or altered object raises DecryptionError from ``read`` (at the failing segment, or
    at the end instead of a clean EOF), never returns garbage. Use as a context manager.
    """

    def __init__(self, path: str | Path, kms: KeyManager, tenant: str, aad: str | None) -> None:
        super().__init__()
        self.name = str(path)
        self._fh = open(path, "rb")  # noqa: SIM115 - owned by this reader, closed in close()
        try:
            self.header, data_key = open_header(self._fh, kms, tenant, aad, self.name)
        except BaseException:
            self._fh.close()
            raise
        self._segments = iter_plaintext(self._fh, self.header, data_key, kms, self.name)
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            segment = next(self._segments, None)
            if segment is None:
                return 0
            self._buffer = memoryview(segment)
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def stable_sha256(source: str | Path | bytes) -> str:
    """sha256 of an encrypted object (a file, or its bytes) without its key slot (hex).

    Unchanged by rewrap, changed by any edit of the data or the fixed header. Manifests, lineage
    and the model registry should record this (or the plaintext's sha256) for encrypted files: a
    plain file sha256 changes whenever ``keys rewrap`` moves the object to a new key version.
    """
    with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as fh:
        header = read_header(fh, "<bytes>" if isinstance(source, bytes) else str(source))
        digest = hashlib.sha256(MAGIC + bytes([header.format_version]) + header.fixed_bytes)
        fh.seek(header.body_offset)
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def content_sha256(source: str | Path | bytes) -> str:
    """The sha256 a manifest (registry, lineage) should record for a stored object: :func:`stable_sha256`
    for an envelope object (so ``keys rewrap`` does not look like tampering), else the sha256 of its
    bytes (a file is streamed)."""
    if isinstance(source, bytes):
        return stable_sha256(source) if source.startswith(MAGIC) else hashlib.sha256(source).hexdigest()
    if is_encrypted(source):
        return stable_sha256(source)
    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _rewrapped_slot(header: EnvelopeHeader, kms: KeyManager, new_key_id: KeyId, name: str) -> bytes:
    try:
        data_key = kms.unwrap(header.key_id, header.wrapped_key, header.wrap_context)
    except SecurityError as exc:
        raise type(exc)(f"cannot rewrap {name}: {exc}") from exc
    return _slot_bytes(kms.backend, new_key_id, kms.wrap(new_key_id, data_key, header.wrap_context))


def rewrap_bytes(blob: bytes, kms: KeyManager, new_key_id: KeyId, name: str = "<bytes>") -> bytes:
    """The object ``blob`` with its data key re-wrapped under ``new_key_id`` (for objects held in an
    object store); everything after the key slot is kept byte for byte."""
    header = read_header(io.BytesIO(blob), name)
    return _header_bytes(header.fixed_bytes, _rewrapped_slot(header, kms, new_key_id, name)) + blob[header.body_offset:]


def rewrap_header(path: str | Path, kms: KeyManager, new_key_id: KeyId) -> EnvelopeHeader:
    """Re-wrap ``path``'s data key under ``new_key_id``: only the key slot changes, the segments are
    copied byte for byte. Written to a temporary file (same mode) and renamed over the original, so
    a crash leaves either the old or the new object, never a broken one."""
    path = Path(path)
    with open(path, "rb") as fh:
        header = read_header(fh, str(path))
        slot = _rewrapped_slot(header, kms, new_key_id, str(path))
        tmp = path.with_name(f".{path.name}.rewrap-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, path.stat().st_mode & 0o777)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(_header_bytes(header.fixed_bytes, slot))
                fh.seek(header.body_offset)
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return read_header(path)
