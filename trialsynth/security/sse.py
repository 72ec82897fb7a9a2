"""S3 server-side encryption with the tenant's customer key (SSE-C) for every request for tenant data in
the lake zone of the S3 deployment (``lake.s3_sse_c``, on by default), on top of (not instead of)
envelope encryption where the object is an envelope.

Each tenant has one 256-bit SSE-C key: random, created once (when the tenant's key is provisioned by
``keys rotate`` in an S3 deployment, or on first use where the KMS creates keys on first use, the
local keyring), stored in the lake store at ``<tenant>/_keys/sse-c.key`` as an envelope object wrapped
by the tenant's KEK. Creation is one conditional PUT (``If-None-Match``), so two first writers agree on
one key. ``keys rewrap`` moves it to the newest KEK version with every other object, and ``keys
destroy`` (crypto-shredding) makes it, and with it every SSE-C object of the tenant, unreadable.
Measured on SeaweedFS 4.48 (tests/test_security_s3_sse.py): a GET without the key or with another key
is refused, the plaintext does not reach the volume files.

:class:`trialsynth.storage.S3LakeStore` sends the key on every GET and PUT (boto3: pyarrow's
S3FileSystem, 26.x, has no SSE-C option) and lists instead of HEAD (a HEAD without the key is refused);
dbt's ClickHouse ``s3()`` sends it as request headers (``S3LakeStore.reader_headers``, macros/bronze.sql).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trialsynth.names import validate_name
from trialsynth.security.errors import KeyNotFoundError
from trialsynth.security.kms import DATA_KEY_BYTES
from trialsynth.storage.lake import KEYS_FOLDER, sse_c_request_args

if TYPE_CHECKING:
    from trialsynth.security.service import KeyService
    from trialsynth.settings import Settings
    from trialsynth.storage import LakeStore

SSE_C_KEY = f"{KEYS_FOLDER}/sse-c.key"  # below the tenant's prefix: <tenant>/_keys/sse-c.key


def sse_c_key_location(tenant: str) -> str:
    """Lake key of ``tenant``'s wrapped SSE-C key."""
    return f"{validate_name(tenant, 'tenant')}/{SSE_C_KEY}"


def tenant_sse_c_key(tenant: str, keys: KeyService, store: LakeStore, *, create: bool = False) -> bytes:
    """``tenant``'s 32-byte SSE-C key, unwrapped with its KEK. ``create``: make it when the tenant has
    none (provisioning; not from concurrent writers: two creators would race). KeyNotFoundError when
    it is missing, KeyDestroyedError / DecryptionError (naming the object and the key) when it cannot
    be opened."""
    from trialsynth.artifacts import object_aad, read_object

    location = sse_c_key_location(tenant)
    if store.exists(location):
        key = read_object(location, tenant, keys, store)
        if len(key) != DATA_KEY_BYTES:
            raise KeyNotFoundError(f"{store.uri(location)} does not hold a 256-bit SSE-C key: restore it from backup")
        return key
    if not create:
        raise KeyNotFoundError(f"tenant {tenant!r} has no SSE-C key at {store.uri(location)}: run "
                               f"`trialsynth keys rotate --tenant {tenant}` to provision it")
    key = os.urandom(DATA_KEY_BYTES)
    if not store.create_bytes(location, keys.encrypt_bytes(key, tenant, object_aad(location))):
        return tenant_sse_c_key(tenant, keys, store)  # another process created it first: use its key
    return key


def sse_c_args(tenant: str, keys: KeyService, store: LakeStore, *, create: bool = False) -> dict[str, Any]:
    """:func:`trialsynth.storage.lake.sse_c_request_args` of ``tenant``'s key:
    ``{"SSECustomerAlgorithm": "AES256", "SSECustomerKey": <32 bytes>}``."""
    return sse_c_request_args(tenant_sse_c_key(tenant, keys, store, create=create))


def store_sse_c_keys(settings: Settings) -> Callable[[str, LakeStore], bytes]:
    """The key source of an SSE-C lake store (:class:`trialsynth.storage.S3LakeStore`'s ``sse_c``): the
    tenant's key, opened with the settings' KMS; created on first use only where the KMS creates keys on
    first use (the local keyring), else KeyNotFoundError saying to run ``keys rotate``."""

    def key_of(tenant: str, store: LakeStore) -> bytes:
        from trialsynth.security.service import KeyService

        keys = KeyService(settings)
        return tenant_sse_c_key(tenant, keys, store, create=keys.kms.creates_keys_on_first_use)

    return key_of
