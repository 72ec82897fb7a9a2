"""Model artifacts and evidence packs, encrypted at rest with the tenant's key (docs/security.md).

Both are objects of the lake store (:mod:`trialsynth.storage`: the local lake folder or the S3
bucket, as ``settings.lake.store`` says) under the tenant's prefix, addressed by lake keys
``<tenant>/<study>/...`` and named by *lake URIs* ``lake:<tenant>/<study>/...``, never by a host path.
Each is an envelope-encrypted object (:mod:`trialsynth.security`: AES-256-GCM, a random data key
wrapped by the tenant's KEK, key id and version in the object's header) whose associated data is
``lake/<key>`` (on the local store that is its path under the data dir, as for every encrypted file).

- Model artifacts: :func:`save_model` pickles a fitted model in memory and stores it encrypted (the
  plaintext never touches the disk); :class:`trialsynth.registry.ModelRegistry` records its URI,
  :func:`~trialsynth.security.envelope.content_sha256` (without the key slot) and the plaintext's sha256; ``load_model`` decrypts and verifies both.
- Evidence packs: :func:`write_encrypted_pack` runs :func:`models.evidence.write_pack` in a private
  temporary folder and stores every file it wrote, encrypted; :func:`read_evidence` is the one
  function that serves a pack file (API, signed report link, CLI).
"""

from __future__ import annotations

import hashlib
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trialsynth.security import KeyService, read_header, stable_sha256
from trialsynth.security.envelope import MAGIC, content_sha256
from trialsynth.settings import Settings, get_settings
from trialsynth.storage import LakeStore, open_lake_stores, tenant_key

if TYPE_CHECKING:  # models.evidence imports scikit-learn and matplotlib: only when a pack is written
    from models.evidence import EvidencePack

LAKE_SCHEME = "lake:"


@dataclass(frozen=True)
class StoredObject:
    """An encrypted object as stored: where, its hashes, and the key that opens it."""

    uri: str  # lake:<tenant>/<study>/...
    location: str  # where the store keeps it: an absolute path (local store) or s3://bucket/key
    sha256: str  # content_sha256: without the key slot, so ``keys rewrap`` does not change it
    plaintext_sha256: str
    key_id: str  # "<tenant>/v<N>" at write time (``keys rewrap`` moves the object to a newer version)
    algorithm: str


def lake_store(settings: Settings | None = None) -> LakeStore:
    """The lake zone's store the settings choose."""
    return open_lake_stores(settings or get_settings())["lake"]


def lake_key(location: str | Path, settings: Settings | None = None) -> str:
    """The lake key of a ``lake:`` URI or of a path under the local lake folder; ValueError otherwise.
    The key's first part is its tenant."""
    text = str(location)
    if text.startswith(LAKE_SCHEME):
        key = text[len(LAKE_SCHEME):]
    else:
        lake, path = (settings or get_settings()).lake_dir.resolve(), Path(location).resolve()
        if not path.is_relative_to(lake) or path == lake:
            raise ValueError(f"{location} is neither a lake: URI nor a path under the lake {lake}")
        key = path.relative_to(lake).as_posix()
    return tenant_key(key.split("/", 1)[0], key)  # ".." and empty parts refused


def key_tenant(key: str) -> str:
    return key.split("/", 1)[0]


def object_aad(key: str) -> str:
    """Associated data of the lake object ``key`` (its path relative to the data dir on the local store)."""
    return f"lake/{key}"


def write_encrypted(data: bytes, key: str, tenant: str, keys: KeyService | None = None,
                    store: LakeStore | None = None) -> StoredObject:
    """Store ``data`` encrypted for ``tenant`` at lake key ``key`` (under ``<tenant>/``; one atomic
    write). The object opens only as this key of this tenant."""
    keys = keys or KeyService()
    store = store or lake_store(keys.settings)
    key = store.guard(tenant, key)  # another tenant's prefix fails before anything is written
    blob = keys.encrypt_bytes(data, tenant, object_aad(key))
    store.write_bytes(key, blob)
    header = read_header(blob, store.uri(key))
    return StoredObject(LAKE_SCHEME + key, store.uri(key), stable_sha256(blob), hashlib.sha256(data).hexdigest(),
                        str(header.key_id), header.algorithm)


def decrypt_object(blob: bytes, key: str, tenant: str, keys: KeyService, name: str) -> bytes:
    """The verified plaintext of ``blob``, the encrypted lake object ``key`` of ``tenant``. Errors (all
    ValueError) name the object (``name``) and the key: wrong tenant, moved, tampered, truncated,
    unknown or destroyed key."""
    return keys.decrypt_bytes(blob, tenant, object_aad(key), name=name)


def read_object(key: str, tenant: str, keys: KeyService | None = None, store: LakeStore | None = None) -> bytes:
    """The verified plaintext of the encrypted lake object ``key`` of ``tenant`` (see :func:`decrypt_object`)."""
    keys = keys or KeyService()
    store = store or lake_store(keys.settings)
    key = store.guard(tenant, key)
    return decrypt_object(store.read_bytes(key), key, tenant, keys, store.uri(key))


def save_model(model: Any, key: str, tenant: str, keys: KeyService | None = None,
               store: LakeStore | None = None) -> StoredObject:
    """Pickle ``model`` (in memory) and store it encrypted for ``tenant`` at lake key ``key``; register
    the returned object's ``uri`` in the model registry and load it with
    :meth:`trialsynth.registry.ModelRegistry.load_model`, never with pickle on the file."""
    return write_encrypted(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), key, tenant, keys, store)


def write_encrypted_pack(pack: EvidencePack, prefix: str, tenant: str, keys: KeyService | None = None,
                         store: LakeStore | None = None) -> dict[str, StoredObject]:
    """:func:`models.evidence.write_pack` with every file it writes stored encrypted for ``tenant``
    under lake key ``prefix`` (``<tenant>/<study>/evidence/<run>``), keyed like write_pack's result.

    The files are written in a private temporary folder (mode 0700, removed afterwards) and each is
    then encrypted into the store under its name. Read one back with :func:`read_evidence`.
    """
    from models.evidence import write_pack

    keys = keys or KeyService()
    store = store or lake_store(keys.settings)
    with tempfile.TemporaryDirectory(prefix="trialsynth-pack-") as plain:
        written = write_pack(pack, plain)
        return {kind: write_encrypted(Path(p).read_bytes(), f"{prefix.rstrip('/')}/{Path(p).name}", tenant, keys, store)
                for kind, p in written.items()}


def read_evidence(location: str | Path, tenant: str | None = None, keys: KeyService | None = None,
                  store: LakeStore | None = None) -> bytes:
    """The bytes of an evidence pack file (``evidence.json``, ``report.html``), decrypted and verified.

    ``location``: its ``lake:`` URI or its path under the local lake folder. ``tenant``: the caller's
    (the API passes the authenticated one); None takes it from the location (the operator's CLI).
    Another tenant's location raises TenantPathError. A pack written before packs were encrypted is
    returned as it is.
    """
    keys = keys or KeyService()
    store = store or lake_store(keys.settings)
    key = lake_key(location, keys.settings)
    tenant = tenant or key_tenant(key)
    key = store.guard(tenant, key)
    blob = store.read_bytes(key)
    if not blob.startswith(MAGIC):
        return blob
    return decrypt_object(blob, key, tenant, keys, store.uri(key))


def stored_location(uri: str, store: LakeStore | None = None) -> tuple[str, str]:
    """(where the store keeps the object, its :func:`~trialsynth.security.envelope.content_sha256`) of a ``lake:`` URI (a registry row
    from before lake URIs: its file): what lineage records and its verification re-checks."""
    if not uri.startswith(LAKE_SCHEME):
        return uri, content_sha256(Path(uri))
    store = store or lake_store()
    key = lake_key(uri)
    return store.uri(key), content_sha256(store.read_bytes(key))
