"""HashiCorp Vault transit backend over its HTTP API (no client library needed).

One transit key per tenant, ``<prefix><tenant>`` (type ``aes256-gcm96``); the transit key's own
versions are the KEK versions, so ``keys rotate`` is Vault's ``rotate``. Wrapping calls
``encrypt`` with ``key_version`` and ``associated_data`` (the object's header hash); unwrapping
calls ``decrypt``. Destroying versions ``<= N`` raises ``min_decryption_version`` to N+1 and trims
(permanently deletes) the older versions; destroying all deletes the transit key
(``deletion_allowed`` first). The token is read from the environment variable named in settings.

Endpoints used (mount ``transit`` by default): ``GET/POST keys/:name``, ``LIST keys``,
``POST keys/:name/rotate``, ``POST keys/:name/config``, ``POST keys/:name/trim``,
``DELETE keys/:name``, ``POST encrypt/:name``, ``POST decrypt/:name``.
"""

from __future__ import annotations

import base64
from typing import Any

import requests

from trialsynth.names import validate_name
from trialsynth.security.errors import (
    KeyCheckError,
    KeyDestroyedError,
    KeyNotFoundError,
    SecurityError,
    UnwrapError,
)
from trialsynth.security.kms import KeyId, KeyManager, KeyVersion

KEY_TYPE = "aes256-gcm96"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class VaultTransit(KeyManager):
    """KEKs as versions of per-tenant Vault transit keys at ``addr`` (e.g. ``http://127.0.0.1:8200``)."""

    backend = "vault"

    def __init__(self, addr: str, token: str, *, mount: str = "transit", key_prefix: str = "trialsynth-",
                 timeout: float = 10.0, session: requests.Session | None = None) -> None:
        if not token:
            raise KeyCheckError(f"no Vault token for {addr}: set the environment variable named by security.vault_token_env")
        self.addr, self.mount, self.key_prefix, self.timeout = addr.rstrip("/"), mount.strip("/"), key_prefix, timeout
        self.session = session or requests.Session()
        self.session.headers["X-Vault-Token"] = token

    def describe(self) -> str:
        return f"Vault transit {self.addr}/v1/{self.mount} (keys {self.key_prefix}<tenant>)"

    def _name(self, tenant: str) -> str:
        return f"{self.key_prefix}{tenant}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """One API call; None on 404, the ``data`` object otherwise; SecurityError on any other error."""
        url = f"{self.addr}/v1/{self.mount}/{path}"
        try:
            resp = self.session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SecurityError(f"cannot reach {self.describe()}: {exc}") from exc
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            errors = resp.json().get("errors") if resp.headers.get("content-type", "").startswith("application/json") else resp.text
            raise SecurityError(f"Vault {method} {path} failed with HTTP {resp.status_code}: {errors}")
        return resp.json().get("data") if resp.content else {}

    def _key(self, tenant: str) -> dict[str, Any] | None:
        return self._call("GET", f"keys/{self._name(tenant)}")

    @staticmethod
    def _first_usable(info: dict[str, Any]) -> int:
        return max(int(info.get("min_available_version") or 0), int(info.get("min_decryption_version") or 1), 1)

    def tenants(self) -> list[str]:
        listed = self._call("LIST", "keys") or {}
        return sorted(k[len(self.key_prefix):] for k in listed.get("keys", []) if k.startswith(self.key_prefix))

    def versions(self, tenant: str) -> list[KeyVersion]:
        info = self._key(tenant)
        if info is None:
            return []
        first, created = self._first_usable(info), info.get("keys", {})
        return [
            KeyVersion(KeyId(tenant, n), "active" if n >= first else "destroyed",
                       str(created.get(str(n))) if str(n) in created else None)
            for n in range(1, int(info["latest_version"]) + 1)
        ]

    def create_version(self, tenant: str) -> KeyId:
        validate_name(tenant, "tenant")
        if self._key(tenant) is None:
            self._call("POST", f"keys/{self._name(tenant)}", {"type": KEY_TYPE})
        else:
            self._call("POST", f"keys/{self._name(tenant)}/rotate")
        return KeyId(tenant, int(self._key(tenant)["latest_version"]))

    def destroy(self, tenant: str, up_to: int | None = None) -> list[KeyId]:
        active = [v.key_id for v in self.versions(tenant) if v.state == "active"]
        name = self._name(tenant)
        if up_to is None:
            self._call("POST", f"keys/{name}/config", {"deletion_allowed": True})
            self._call("DELETE", f"keys/{name}")
            return active
        if active and up_to >= max(active).version:
            raise ValueError(
                f"Vault transit always keeps a key's latest version: rotate {tenant} first, or destroy all versions"
            )
        self._call("POST", f"keys/{name}/config", {"min_decryption_version": up_to + 1})
        self._call("POST", f"keys/{name}/trim", {"min_available_version": up_to + 1})
        return [k for k in active if k.version <= up_to]

    def wrap(self, key_id: KeyId, data_key: bytes, context: bytes) -> bytes:
        self.version(key_id)  # transit's encrypt would otherwise create a missing key silently
        out = self._call("POST", f"encrypt/{self._name(key_id.tenant)}", {
            "plaintext": _b64(data_key), "key_version": key_id.version, "associated_data": _b64(context),
        })
        return out["ciphertext"].encode()

    def unwrap(self, key_id: KeyId, wrapped: bytes, context: bytes) -> bytes:
        self.version(key_id)  # clear "destroyed" / "unknown" messages before Vault's generic errors
        if not wrapped.startswith(f"vault:v{key_id.version}:".encode()):
            raise UnwrapError(f"the wrapped data key was not made by {key_id} ({self.describe()}): the header was altered")
        try:
            out = self._call("POST", f"decrypt/{self._name(key_id.tenant)}",
                             {"ciphertext": wrapped.decode(), "associated_data": _b64(context)})
        except SecurityError as exc:
            raise UnwrapError(f"the data key does not unwrap with {key_id} ({self.describe()}): {exc}") from exc
        if out is None:
            raise KeyNotFoundError(f"key {key_id} does not exist in {self.describe()}")
        return base64.b64decode(out["plaintext"])

    def verify(self, key_id: KeyId) -> None:
        info = self._key(key_id.tenant)
        if info is None:
            raise KeyCheckError(f"key {key_id} does not exist in {self.describe()}: create it with "
                                f"`trialsynth keys rotate --tenant {key_id.tenant}` or restore Vault")
        if info.get("type") != KEY_TYPE:
            raise KeyCheckError(f"Vault key {self._name(key_id.tenant)} is of type {info.get('type')}; "
                                f"trialsynth needs {KEY_TYPE} (AES-256-GCM)")
        try:
            self.version(key_id)
        except (KeyNotFoundError, KeyDestroyedError) as exc:
            raise KeyCheckError(str(exc)) from exc
