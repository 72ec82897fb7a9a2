"""Ed25519 signing keys for lineage manifests and checkpoints.

The private key lives behind one small interface, :class:`LineageSigner`, and one loader,
:func:`load_signer`: today a local key file (PKCS#8 PEM, mode 0600, generated on first use), later
the security issue's key store: replace :func:`load_signer` and nothing else changes.

Default key file: ``<data dir's parent>/.trialsynth-keys/lineage-ed25519.pem`` (for the project's
default ``data/`` that is ``<repo>/.trialsynth-keys/``, which .gitignore excludes), or the path in
``lineage.signing_key_path``. A key file readable by group or others is refused, as ssh does.

Key ids are self-certifying: ``ed25519-<first 16 hex of sha256(raw public key)>``. Public keys are
published beside the chain (``lineage/keys/<key id>.json``); verification trusts only the key ids in
:class:`KeyRing` (the local signing key's and ``lineage.trusted_key_ids``), never a key merely
because it was published, so a chain re-signed with another key is caught.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trialsynth.settings import Settings

KEY_FILE_NAME = "lineage-ed25519.pem"
ALGORITHM = "Ed25519"


class LineageSigner(Protocol):
    """What the lineage store needs from a key: its id, its public half and a signature."""

    @property
    def key_id(self) -> str: ...

    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    def sign(self, data: bytes) -> bytes: ...


def key_id_of(public_raw: bytes) -> str:
    return "ed25519-" + hashlib.sha256(public_raw).hexdigest()[:16]


def default_key_path(settings: Settings) -> Path:
    """Where the local signing key lives when ``lineage.signing_key_path`` is unset."""
    configured = settings.lineage.signing_key_path
    if configured is not None:
        return configured if configured.is_absolute() else settings.root / configured
    return settings.data_path.parent / ".trialsynth-keys" / KEY_FILE_NAME


class FileSigner:
    """Ed25519 key in a local PEM file; generated (0600, atomically) when the file does not exist."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._key = self._load_or_create()
        self._public = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def _load_or_create(self) -> Ed25519PrivateKey:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            # link() fails when another process created the key first: then we use theirs
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.path)
            tmp.unlink()
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise ValueError(f"lineage signing key {self.path} is accessible by group/others (mode {mode:o}); "
                             f"run `chmod 600 {self.path}`")
        key = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"lineage signing key {self.path} is not an Ed25519 private key")
        return key

    @property
    def key_id(self) -> str:
        return key_id_of(self._public)

    def public_key(self) -> bytes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def load_signer(settings: Settings) -> LineageSigner:
    """The signing key for new manifests and checkpoints (the one seam the key store replaces)."""
    return FileSigner(default_key_path(settings))


def public_key_document(signer: LineageSigner) -> bytes:
    """What is published beside the chain as ``lineage/keys/<key id>.json``."""
    doc = {"key_id": signer.key_id, "algorithm": ALGORITHM,
           "public_key": base64.b64encode(signer.public_key()).decode()}
    return json.dumps(doc, sort_keys=True).encode()


def parse_public_key_document(data: bytes) -> tuple[str, bytes]:
    """(key id, raw public key) of a published key; ValueError when its id is not its fingerprint."""
    doc = json.loads(data)
    raw = base64.b64decode(doc["public_key"])
    if doc.get("algorithm") != ALGORITHM or key_id_of(raw) != doc.get("key_id"):
        raise ValueError(f"published key {doc.get('key_id')!r} does not match its own fingerprint")
    return doc["key_id"], raw


@dataclass
class KeyRing:
    """Key ids verification trusts, and the public keys known for them."""

    trusted_ids: set[str]
    public_keys: dict[str, bytes] = field(default_factory=dict)

    def add_public(self, key_id: str, raw: bytes) -> None:
        if key_id_of(raw) != key_id:
            raise ValueError(f"public key does not match key id {key_id}")
        self.public_keys[key_id] = raw

    def check(self, key_id: str, data: bytes, signature: bytes) -> str | None:
        """None when ``signature`` over ``data`` is valid under a trusted key, else why not."""
        if key_id not in self.trusted_ids:
            return (f"signed with key {key_id}, which is not a trusted key "
                    f"(trusted: {', '.join(sorted(self.trusted_ids)) or 'none configured'})")
        raw = self.public_keys.get(key_id)
        if raw is None:
            return f"no public key found for trusted key {key_id} (not published beside the chain)"
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, data)
        except InvalidSignature:
            return f"Ed25519 signature does not verify under key {key_id}"
        return None


def trusted_keyring(settings: Settings) -> KeyRing:
    """Trust the configured ``lineage.trusted_key_ids`` plus the local signing key when its file exists
    (verification never creates a key)."""
    ring = KeyRing(set(settings.lineage.trusted_key_ids))
    path = default_key_path(settings)
    if path.exists():
        signer = FileSigner(path)
        ring.trusted_ids.add(signer.key_id)
        ring.add_public(signer.key_id, signer.public_key())
    return ring
