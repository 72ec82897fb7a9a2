"""AWS KMS backend: one symmetric KMS key per tenant KEK version, found by alias.

Alias of ``acme/v2``: ``<prefix>acme/v2`` (default prefix ``alias/trialsynth/``). KMS alias names
allow only letters, digits, ``/``, ``_`` and ``-``, so a tenant's ``_`` is written ``__`` and its
``.`` ``_d`` (a reversible escape). Data keys are wrapped with ``Encrypt``/``Decrypt`` under that
key with an encryption context naming the tenant and the object's header hash (visible in
CloudTrail). Destroying a version disables its key at once and schedules its deletion (7 days, the
AWS minimum; until then an administrator could cancel it: say so to the sponsor).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from trialsynth.names import validate_name
from trialsynth.security.errors import (
    KeyCheckError,
    KeyDestroyedError,
    KeyNotFoundError,
    SecurityError,
    UnwrapError,
)
from trialsynth.security.kms import KeyId, KeyManager, KeyVersion

DELETION_WINDOW_DAYS = 7


def _escape(tenant: str) -> str:
    return tenant.replace("_", "__").replace(".", "_d")


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "_" and i + 1 < len(text):
            out.append("_" if text[i + 1] == "_" else ".")
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


@contextmanager
def _aws_errors(action: str) -> Iterator[None]:
    """botocore's errors (no credentials, access denied, throttling) as one clear SecurityError."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise SecurityError(f"AWS KMS could not {action}: {exc}") from exc


class AwsKms(KeyManager):
    """KEKs in AWS KMS (or anything speaking its API, e.g. moto in tests).

    ``client``: a boto3 KMS client; built from ``region`` / ``endpoint_url`` when None.
    """

    backend = "aws"

    def __init__(self, client: Any = None, *, region: str | None = None, endpoint_url: str | None = None,
                 alias_prefix: str = "alias/trialsynth/") -> None:
        if not alias_prefix.startswith("alias/"):
            raise ValueError(f"aws_key_alias_prefix must start with 'alias/', got {alias_prefix!r}")
        if client is None:
            import boto3  # only this backend needs it

            client = boto3.session.Session().client("kms", region_name=region, endpoint_url=endpoint_url)
        self.client = client
        self.alias_prefix = alias_prefix

    def describe(self) -> str:
        return f"AWS KMS ({self.client.meta.region_name}, aliases {self.alias_prefix}<tenant>/v<N>)"

    def alias(self, key_id: KeyId) -> str:
        return f"{self.alias_prefix}{_escape(key_id.tenant)}/v{key_id.version}"

    def _aliases(self) -> list[KeyId]:
        found = []
        with _aws_errors("list key aliases"):
            pages = list(self.client.get_paginator("list_aliases").paginate())
        for page in pages:
            for entry in page["Aliases"]:
                rest = entry["AliasName"][len(self.alias_prefix):]
                if entry["AliasName"].startswith(self.alias_prefix) and "/v" in rest:
                    tenant, _, number = rest.rpartition("/v")
                    if number.isdigit():
                        found.append(KeyId(_unescape(tenant), int(number)))
        return sorted(found)

    def _describe(self, key_id: KeyId) -> dict[str, Any]:
        try:
            return self.client.describe_key(KeyId=self.alias(key_id))["KeyMetadata"]
        except ClientError as exc:
            if _code(exc) == "NotFoundException":
                raise KeyNotFoundError(
                    f"key {key_id} does not exist in {self.describe()} (no alias {self.alias(key_id)}): "
                    "check the region and alias prefix in settings.security"
                ) from exc
            raise SecurityError(f"AWS KMS could not describe key {key_id}: {exc}") from exc
        except BotoCoreError as exc:  # no credentials, endpoint unreachable
            raise SecurityError(f"AWS KMS could not describe key {key_id}: {exc}") from exc

    def _record(self, key_id: KeyId, meta: dict[str, Any]) -> KeyVersion:
        created = meta.get("CreationDate")
        deleted = meta.get("DeletionDate")
        return KeyVersion(
            key_id,
            "active" if meta.get("KeyState") == "Enabled" else "destroyed",
            created.isoformat() if created else None,
            f"{meta.get('KeyState')}, deletion {deleted.isoformat()}" if deleted else meta.get("KeyState"),
        )

    def version(self, key_id: KeyId) -> KeyVersion:
        record = self._record(key_id, self._describe(key_id))
        if record.state == "destroyed":
            raise KeyDestroyedError(
                f"key {key_id} was destroyed ({record.destroyed_at}; {self.describe()}): objects encrypted with "
                "it are unreadable (crypto-shredded)"
            )
        return record

    def tenants(self) -> list[str]:
        return sorted({k.tenant for k in self._aliases()})

    def versions(self, tenant: str) -> list[KeyVersion]:
        return [self._record(k, self._describe(k)) for k in self._aliases() if k.tenant == tenant]

    def create_version(self, tenant: str) -> KeyId:
        validate_name(tenant, "tenant")
        key_id = KeyId(tenant, max((k.version for k in self._aliases() if k.tenant == tenant), default=0) + 1)
        with _aws_errors(f"create key {key_id}"):
            meta = self.client.create_key(
                KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT", Description=f"trialsynth KEK {key_id}",
                Tags=[{"TagKey": "trialsynth:key_id", "TagValue": str(key_id)}],
            )["KeyMetadata"]
            self.client.create_alias(AliasName=self.alias(key_id), TargetKeyId=meta["KeyId"])
        return key_id

    def destroy(self, tenant: str, up_to: int | None = None) -> list[KeyId]:
        destroyed = []
        for v in self.versions(tenant):
            if v.state == "active" and (up_to is None or v.key_id.version <= up_to):
                target = self._describe(v.key_id)["KeyId"]  # these two calls take a key id, not an alias
                with _aws_errors(f"destroy key {v.key_id}"):
                    self.client.disable_key(KeyId=target)  # unreadable now; deletion follows after the window
                    self.client.schedule_key_deletion(KeyId=target, PendingWindowInDays=DELETION_WINDOW_DAYS)
                destroyed.append(v.key_id)
        return destroyed

    @staticmethod
    def _context(key_id: KeyId, context: bytes) -> dict[str, str]:
        return {"trialsynth:tenant": key_id.tenant, "trialsynth:object": hashlib.sha256(context).hexdigest()}

    def wrap(self, key_id: KeyId, data_key: bytes, context: bytes) -> bytes:
        self.version(key_id)
        with _aws_errors(f"wrap a data key with {key_id}"):
            return self.client.encrypt(
                KeyId=self.alias(key_id), Plaintext=data_key, EncryptionContext=self._context(key_id, context)
            )["CiphertextBlob"]

    def unwrap(self, key_id: KeyId, wrapped: bytes, context: bytes) -> bytes:
        self.version(key_id)  # a clear "destroyed" before KMS's generic state error
        try:
            return self.client.decrypt(
                CiphertextBlob=wrapped, KeyId=self.alias(key_id), EncryptionContext=self._context(key_id, context)
            )["Plaintext"]
        except ClientError as exc:
            if _code(exc) in ("DisabledException", "KMSInvalidStateException"):
                raise KeyDestroyedError(f"key {key_id} is disabled or pending deletion in {self.describe()}") from exc
            if _code(exc) in ("InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException"):
                raise UnwrapError(
                    f"the data key does not unwrap with {key_id} ({self.describe()}: {_code(exc)}): it was wrapped "
                    "by another key or for another object, or the object's header was altered"
                ) from exc
            raise SecurityError(f"AWS KMS refused to unwrap with {key_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise SecurityError(f"AWS KMS could not unwrap with {key_id}: {exc}") from exc

    def verify(self, key_id: KeyId) -> None:
        try:
            meta = self._describe(key_id)
        except SecurityError as exc:
            raise KeyCheckError(str(exc)) from exc
        if meta.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT" or meta.get("KeyUsage") != "ENCRYPT_DECRYPT":
            raise KeyCheckError(
                f"key {key_id} ({self.alias(key_id)}) is a {meta.get('KeySpec')}/{meta.get('KeyUsage')} key; "
                "trialsynth needs a SYMMETRIC_DEFAULT (AES-256-GCM) ENCRYPT_DECRYPT key: point the alias at one"
            )
        if meta.get("KeyState") != "Enabled":
            raise KeyCheckError(f"key {key_id} ({self.alias(key_id)}) is {meta.get('KeyState')} in {self.describe()}")
