"""The embedded default KMS: a JSON keyring file, mode 0600, outside the data directory.

Layout::

    {"format": "trialsynth-keyring", "format_version": 1,
     "tenants": {"acme": {"1": {"key": "<base64 32 bytes>", "state": "active", "created_at": "..."},
                          "2": {...}}}}

A destroyed version keeps its entry (state ``destroyed``, ``destroyed_at``) without the key bytes,
so version numbers are never reused and errors can say *destroyed* rather than *unknown*. The file
is rewritten atomically (temporary file created 0600, fsync, rename) under an exclusive lock. A file
readable by anyone but its owner, or owned by another user, is refused.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trialsynth.names import validate_name
from trialsynth.security.errors import KeyCheckError, UnwrapError
from trialsynth.security.kms import DATA_KEY_BYTES, KeyId, KeyManager, KeyVersion

FORMAT = "trialsynth-keyring"
_NONCE_BYTES = 12


class LocalKeyring(KeyManager):
    """KEKs kept in one local file (``path``), created with mode 0600 on first use."""

    backend = "local"
    creates_keys_on_first_use = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return f"local keyring {self.path}"

    # -- file handling -------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {"format": FORMAT, "format_version": 1, "tenants": {}}
        if st.st_mode & 0o077:
            raise KeyCheckError(
                f"{self.describe()} has mode {stat.filemode(st.st_mode)}: a keyring must be readable by its "
                f"owner only; run `chmod 600 {self.path}` (and check who could have copied it)"
            )
        if st.st_uid != os.getuid():
            raise KeyCheckError(
                f"{self.describe()} is owned by uid {st.st_uid}, not by this user ({os.getuid()}): refusing it"
            )
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise KeyCheckError(f"{self.describe()} cannot be read as a keyring ({exc}): restore it from backup") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tenants"), dict):
            raise KeyCheckError(f"{self.describe()} is not a trialsynth keyring: restore it from backup")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Exclusive read-modify-write of the keyring; the parent folder is created 0700."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            data = self._load()
            yield data
            self._save(data)
        finally:
            os.close(lock_fd)  # releases the lock

    def _entry(self, key_id: KeyId) -> dict[str, Any] | None:
        return self._load()["tenants"].get(key_id.tenant, {}).get(str(key_id.version))

    def _kek(self, key_id: KeyId) -> bytes:
        self.version(key_id)  # raises KeyNotFoundError / KeyDestroyedError with the key named
        entry = self._entry(key_id) or {}
        try:
            kek = base64.b64decode(entry.get("key", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyCheckError(f"key {key_id} in {self.describe()} is not valid base64: restore the keyring") from exc
        if len(kek) != DATA_KEY_BYTES:
            raise KeyCheckError(
                f"key {key_id} in {self.describe()} is {len(kek)} bytes; AES-256 needs {DATA_KEY_BYTES}: "
                "the keyring was edited or corrupted, restore it from backup"
            )
        return kek

    # -- KeyManager ----------------------------------------------------------------------------
    def tenants(self) -> list[str]:
        return sorted(self._load()["tenants"])

    def versions(self, tenant: str) -> list[KeyVersion]:
        entries = self._load()["tenants"].get(tenant, {})
        return [
            KeyVersion(KeyId(tenant, int(n)), e.get("state", "active"), e.get("created_at"), e.get("destroyed_at"))
            for n, e in sorted(entries.items(), key=lambda item: int(item[0]))
        ]

    def create_version(self, tenant: str) -> KeyId:
        validate_name(tenant, "tenant")
        with self._locked() as data:
            entries = data["tenants"].setdefault(tenant, {})
            number = max((int(n) for n in entries), default=0) + 1
            entries[str(number)] = {
                "key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(),
                "state": "active",
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        return KeyId(tenant, number)

    def destroy(self, tenant: str, up_to: int | None = None) -> list[KeyId]:
        destroyed = []
        with self._locked() as data:
            for n, entry in data["tenants"].get(tenant, {}).items():
                if entry.get("state") != "destroyed" and (up_to is None or int(n) <= up_to):
                    entry.pop("key", None)
                    entry["state"] = "destroyed"
                    entry["destroyed_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                    destroyed.append(KeyId(tenant, int(n)))
        return sorted(destroyed)

    def wrap(self, key_id: KeyId, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + AESGCM(self._kek(key_id)).encrypt(nonce, data_key, context)

    def unwrap(self, key_id: KeyId, wrapped: bytes, context: bytes) -> bytes:
        kek = self._kek(key_id)
        try:
            return AESGCM(kek).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise UnwrapError(
                f"the data key does not unwrap with {key_id} ({self.describe()}): the keyring holds different "
                "key material than the one that encrypted this object, or the object's header was altered"
            ) from exc

    def verify(self, key_id: KeyId) -> None:
        try:
            self._kek(key_id)
        except KeyCheckError:
            raise
        except ValueError as exc:  # KeyNotFoundError / KeyDestroyedError
            raise KeyCheckError(str(exc)) from exc
