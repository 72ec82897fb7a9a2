"""The key-management interface every backend (local keyring, AWS KMS, Vault transit) implements.

A tenant has numbered key-encryption keys (KEKs): ``acme/v1``, ``acme/v2``, ... The newest active
version wraps new data keys; older versions stay usable for unwrapping until destroyed. A backend
never sees object data, only 32-byte data keys and a ``context`` that binds the wrapped key to
one object (see :mod:`trialsynth.security.envelope`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

from trialsynth.names import validate_name
from trialsynth.security.errors import KeyDestroyedError, KeyNotFoundError

DATA_KEY_BYTES = 32  # AES-256
_KEY_ID = re.compile(r"^(?P<tenant>[^/]+)/v(?P<version>[1-9][0-9]*)$")

KeyState = Literal["active", "destroyed"]


@dataclass(frozen=True, order=True)
class KeyId:
    """One KEK version of a tenant; printed and stored as ``"<tenant>/v<version>"``."""

    tenant: str
    version: int

    def __str__(self) -> str:
        return f"{self.tenant}/v{self.version}"

    @classmethod
    def parse(cls, text: str) -> KeyId:
        match = _KEY_ID.fullmatch(text)
        if not match:
            raise ValueError(f"invalid key id {text!r}: expected '<tenant>/v<version>', e.g. 'acme/v2'")
        return cls(validate_name(match["tenant"], "tenant"), int(match["version"]))


@dataclass(frozen=True)
class KeyVersion:
    """A KEK version as the backend reports it (times are ISO-8601 strings or None if unknown)."""

    key_id: KeyId
    state: KeyState
    created_at: str | None = None
    destroyed_at: str | None = None


class KeyManager(ABC):
    """Wraps and unwraps data keys under per-tenant, versioned KEKs."""

    backend: ClassVar[str]
    creates_keys_on_first_use: ClassVar[bool] = False  # only the embedded local keyring does

    @abstractmethod
    def describe(self) -> str:
        """Where the keys live, for messages (e.g. ``"local keyring /home/x/keyring.json"``)."""

    @abstractmethod
    def tenants(self) -> list[str]:
        """Tenants that have (or had) keys, sorted."""

    @abstractmethod
    def versions(self, tenant: str) -> list[KeyVersion]:
        """All versions of ``tenant`` oldest first (empty when the tenant has no key)."""

    @abstractmethod
    def create_version(self, tenant: str) -> KeyId:
        """Make a new KEK version (``v1`` for a new tenant) and return its id; it becomes current."""

    @abstractmethod
    def destroy(self, tenant: str, up_to: int | None = None) -> list[KeyId]:
        """Destroy versions ``<= up_to`` (all when None); returns the ids destroyed by this call."""

    @abstractmethod
    def wrap(self, key_id: KeyId, data_key: bytes, context: bytes) -> bytes:
        """Encrypt ``data_key`` under ``key_id``, authenticating ``context``."""

    @abstractmethod
    def unwrap(self, key_id: KeyId, wrapped: bytes, context: bytes) -> bytes:
        """Inverse of :meth:`wrap`; raises UnwrapError, KeyNotFoundError or KeyDestroyedError."""

    @abstractmethod
    def verify(self, key_id: KeyId) -> None:
        """Check the key exists and is an AES-256 key usable for wrapping; raise KeyCheckError if not."""

    def version(self, key_id: KeyId) -> KeyVersion:
        """The backend's record of ``key_id``; raises KeyNotFoundError / KeyDestroyedError."""
        for v in self.versions(key_id.tenant):
            if v.key_id == key_id:
                if v.state == "destroyed":
                    raise KeyDestroyedError(
                        f"key {key_id} was destroyed{f' at {v.destroyed_at}' if v.destroyed_at else ''} "
                        f"({self.describe()}): objects encrypted with it are unrecoverable (crypto-shredded)"
                    )
                return v
        raise KeyNotFoundError(
            f"key {key_id} does not exist in {self.describe()}: restore the key from backup, or check "
            "that settings.security points at the right key store"
        )

    def current(self, tenant: str) -> KeyId:
        """The newest active version of ``tenant``: the one new writes use."""
        versions = self.versions(tenant)
        active = [v.key_id for v in versions if v.state == "active"]
        if active:
            return max(active)
        if versions:
            raise KeyDestroyedError(
                f"every key of tenant {tenant!r} was destroyed ({self.describe()}); run "
                f"`trialsynth keys rotate --tenant {tenant}` to start a new version on purpose"
            )
        raise KeyNotFoundError(
            f"tenant {tenant!r} has no key in {self.describe()}: run `trialsynth keys rotate --tenant {tenant}` "
            "to create version 1"
        )
