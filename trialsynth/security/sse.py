"""S3 server-side encryption with the tenant's customer key (SSE-C) for every PUT of tenant data in
the S3 deployment, on top of (not instead of) envelope encryption where the object is an envelope.

Each tenant has one 256-bit SSE-C key: random, created once when the tenant's key is provisioned
(``keys rotate`` in an S3 deployment), stored in the lake store at ``<tenant>/_keys/sse-c.key`` as an
envelope object wrapped by the tenant's KEK. So ``keys rewrap`` moves it to the newest KEK version
with every other object, and ``keys destroy`` (crypto-shredding) makes it, and with it every SSE-C
object of the tenant, unreadable. Measured on SeaweedFS 4.48 (tests/test_security_s3_sse.py): a GET
without the key or with another key is refused, the plaintext does not reach the volume files.

:func:`sse_c_args` gives the arguments boto3's ``put_object`` / ``get_object`` / ``head_object`` /
``create_multipart_upload`` / ``upload_part`` / ``copy_object`` (as ``CopySourceSSECustomer*`` too) take.
pyarrow's S3FileSystem (26.x, used by :mod:`trialsynth.storage`) has no SSE-C option: a store that
uses it must send tenant objects through boto3 with these arguments.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from trialsynth.names import validate_name
from trialsynth.security.errors import KeyNotFoundError
from trialsynth.security.kms import DATA_KEY_BYTES

if TYPE_CHECKING:
    from trialsynth.security.service import KeyService
    from trialsynth.storage import LakeStore

SSE_C_KEY = "_keys/sse-c.key"  # below the tenant's prefix: <tenant>/_keys/sse-c.key
SSE_C_ALGORITHM = "AES256"  # the only algorithm S3's SSE-C accepts (AES-256)


def sse_c_key_location(tenant: str) -> str:
    """Lake key of ``tenant``'s wrapped SSE-C key."""
    return f"{validate_name(tenant, 'tenant')}/{SSE_C_KEY}"


def tenant_sse_c_key(tenant: str, keys: KeyService, store: LakeStore, *, create: bool = False) -> bytes:
    """``tenant``'s 32-byte SSE-C key, unwrapped with its KEK. ``create``: make it when the tenant has
    none (provisioning; not from concurrent writers: two creators would race). KeyNotFoundError when
    it is missing, KeyDestroyedError / DecryptionError (naming the object and the key) when it cannot
    be opened."""
    from trialsynth.artifacts import read_object, write_encrypted

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
    write_encrypted(key, location, tenant, keys, store)
    return key


def sse_c_args(tenant: str, keys: KeyService, store: LakeStore, *, create: bool = False) -> dict[str, Any]:
    """boto3 arguments that put ``tenant``'s objects under SSE-C and read them back:
    ``{"SSECustomerAlgorithm": "AES256", "SSECustomerKey": <32 bytes>}`` (boto3 base64-encodes the key
    and adds its MD5). Pass them to every PUT, GET and HEAD of the tenant's objects."""
    return {"SSECustomerAlgorithm": SSE_C_ALGORITHM,
            "SSECustomerKey": tenant_sse_c_key(tenant, keys, store, create=create)}
