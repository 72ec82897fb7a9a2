"""The chain of lineage manifests per tenant/study, on any :class:`ObjectBackend`.

Keys (the same in a local folder and in an S3 bucket)::

    lineage/keys/<key id>.json                        published public keys (write-once)
    lineage/<tenant>/<study>/<seq:012d>-<hash>.json   one manifest per materialization (write-once)
    lineage/<tenant>/<study>/seq/<seq:012d>           the sequence claim: {"sequence", "hash", "manifest"}
    lineage/<tenant>/<study>/checkpoints/<n:012d>.json signed Merkle root over the first n manifests
    lineage/<tenant>/<study>/HEAD.json                head hint {"sequence", "hash"} (mutable, unverified)

Append is O(1): read the head hint, step forward over any claims written since (normally none),
write the manifest, then claim its sequence with a create-if-absent write (``If-None-Match: *`` on
S3, ``link()`` locally). Of two writers racing for a sequence one claim wins; the other re-reads the
new head, re-chains its manifest onto it and retries, so the chain never forks. The loser's first
manifest stays behind unclaimed (on S3 it is locked); verification reports it as an orphan.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trialsynth.hashing import canonical_json
from trialsynth.lineage.backends import (
    KeyVersions,
    LocalBackend,
    ObjectBackend,
    ObjectExistsError,
    S3Backend,
    StoredObject,
)
from trialsynth.lineage.keys import LineageSigner, load_signer, public_key_document
from trialsynth.lineage.manifest import GENESIS, build_manifest, facet_of, flat_record, stored_bytes
from trialsynth.lineage.merkle import merkle_root
from trialsynth.names import validate_name
from trialsynth.settings import Settings, get_settings

ROOT = "lineage"
KEYS_PREFIX = f"{ROOT}/keys/"
MAX_APPEND_ATTEMPTS = 50
MANIFEST_NAME = re.compile(r"^(\d{12})-([0-9a-f]{64})\.json$")
CHECKPOINT_TYPE = "trialsynth.lineage.checkpoint/1"


def partition_prefix(tenant: str, study: str) -> str:
    return f"{ROOT}/{validate_name(tenant, 'tenant')}/{validate_name(study, 'study')}/"


def manifest_key(tenant: str, study: str, sequence: int, digest: str) -> str:
    return f"{partition_prefix(tenant, study)}{sequence:012d}-{digest}.json"


def claim_key(tenant: str, study: str, sequence: int) -> str:
    return f"{partition_prefix(tenant, study)}seq/{sequence:012d}"


def checkpoint_key(tenant: str, study: str, tree_size: int) -> str:
    return f"{partition_prefix(tenant, study)}checkpoints/{tree_size:012d}.json"


def head_key(tenant: str, study: str) -> str:
    return f"{partition_prefix(tenant, study)}HEAD.json"


def checkpoint_signing_bytes(doc: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in doc.items() if k != "signature"}).encode()


@dataclass(frozen=True)
class Head:
    sequence: int  # -1 for an empty chain
    hash: str


@dataclass(frozen=True)
class ChainIndex:
    """What a listing of one partition says: claimed hash per sequence, manifest keys, checkpoints."""

    manifests: dict[int, list[str]]  # sequence -> manifest keys (more than one only after a lost race)
    checkpoints: list[str]

    def resolve(self, sequence: int, claimed: str | None) -> str | None:
        """The manifest key of ``sequence``: the claimed one, or the only one when no claim is read."""
        keys = self.manifests.get(sequence, [])
        if claimed is not None:
            return next((k for k in keys if MANIFEST_NAME.match(k.rsplit("/", 1)[1])[2] == claimed), None)
        return keys[0] if len(keys) == 1 else None


class ChainStore:
    """Signed, hash-chained manifests of every tenant/study on ``backend``."""

    def __init__(self, backend: ObjectBackend, signer: LineageSigner | None = None) -> None:
        self.backend = backend
        self._signer = signer
        self._published: set[str] = set()

    @property
    def signer(self) -> LineageSigner:
        if self._signer is None:
            self._signer = load_signer(get_settings())
        return self._signer

    @property
    def location(self) -> str:
        return self.backend.location

    # -- writing ---------------------------------------------------------------------------------
    def publish_key(self) -> str:
        """Publish the signer's public key beside the chains (once; write-once object)."""
        key_id = self.signer.key_id
        if key_id not in self._published:
            key = f"{KEYS_PREFIX}{key_id}.json"
            if self.backend.get(key) is None:
                with contextlib.suppress(ObjectExistsError):  # or published by another writer meanwhile
                    self.backend.put_new(key, public_key_document(self.signer))
            self._published.add(key_id)
        return key_id

    def head(self, tenant: str, study: str) -> Head:
        """The chain's last (sequence, hash): the head hint, advanced over any newer claims."""
        hint = self.backend.get(head_key(tenant, study))
        try:
            doc = json.loads(hint.data) if hint is not None else {}
            head = Head(int(doc["sequence"]), str(doc["hash"]))
        except (ValueError, KeyError):  # no hint, or a damaged one: walk the claims from the start
            head = Head(-1, GENESIS)
        return self._advance(tenant, study, head)

    def _advance(self, tenant: str, study: str, head: Head) -> Head:
        while (claim := self.backend.get(claim_key(tenant, study, head.sequence + 1))) is not None:
            head = Head(head.sequence + 1, json.loads(claim.data)["hash"])
        return head

    def append(self, tenant: str, study: str, record: dict[str, Any]) -> dict[str, Any]:
        """Sign ``record`` (see :data:`~trialsynth.lineage.manifest.RECORD_FIELDS`) as the next manifest
        of tenant/study and return it as a flat record (the whole RunEvent under ``manifest``)."""
        self.publish_key()
        head = self.head(tenant, study)
        for _ in range(MAX_APPEND_ATTEMPTS):
            sequence = head.sequence + 1
            event = build_manifest(tenant, study, record, sequence, head.hash, self.signer)
            digest = facet_of(event)["hash"]
            key = manifest_key(tenant, study, sequence, digest)
            self.backend.put_new(key, stored_bytes(event))
            claim = {"sequence": sequence, "hash": digest, "manifest": key}
            try:
                self.backend.put_new(claim_key(tenant, study, sequence), canonical_json(claim).encode())
            except ObjectExistsError:  # another writer took this sequence: chain onto theirs
                head = self._advance(tenant, study, head)
                continue
            self.backend.put_mutable(head_key(tenant, study), json.dumps({"sequence": sequence, "hash": digest}).encode())
            return flat_record(event)
        raise RuntimeError(f"lineage append for {tenant}/{study} lost {MAX_APPEND_ATTEMPTS} races in a row; retry")

    # -- reading ---------------------------------------------------------------------------------
    def partitions(self) -> list[tuple[str, str]]:
        """Every (tenant, study) with a chain."""
        return [(tenant, study) for tenant in self.backend.children(f"{ROOT}/") if tenant != "keys"
                for study in self.backend.children(f"{ROOT}/{tenant}/")]

    def index(self, listing: dict[str, Any], tenant: str, study: str) -> ChainIndex:
        prefix = partition_prefix(tenant, study)
        manifests: dict[int, list[str]] = {}
        checkpoints = []
        for key in sorted(listing):
            rest = key[len(prefix):]
            if m := MANIFEST_NAME.match(rest):
                manifests.setdefault(int(m[1]), []).append(key)
            elif rest.startswith("checkpoints/") and rest.endswith(".json"):
                checkpoints.append(key)
        return ChainIndex(manifests, checkpoints)

    def read_events(self, tenant: str, study: str) -> list[dict[str, Any]]:
        """The chain's manifests (RunEvent dicts) in sequence order, as first written; a claimed
        manifest that is missing is skipped (verification names it)."""
        prefix = partition_prefix(tenant, study)
        listing = self.backend.scan(prefix)
        index = self.index(listing, tenant, study)
        claims = sorted(int(k.rsplit("/", 1)[1]) for k in listing if k.startswith(f"{prefix}seq/"))
        events = []
        for sequence in claims:
            key = index.resolve(sequence, None)
            if key is None:  # a lost race left two manifests at this sequence: the claim decides
                claim = self._original(listing, claim_key(tenant, study, sequence))
                key = index.resolve(sequence, json.loads(claim.data)["hash"]) if claim else None
            stored = self._original(listing, key) if key else None
            if stored is None:
                continue
            try:
                events.append(json.loads(stored.data))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.location}/{key} is not valid JSON ({exc.msg})") from exc
        return events

    def _original(self, listing: dict[str, KeyVersions], key: str) -> StoredObject | None:
        """The first version of ``key`` (on S3 later versions can only be added around the locked one)."""
        return self.backend.get(key, listing[key].original) if key in listing else None

    def read(self, tenant: str, study: str) -> list[dict[str, Any]]:
        """The chain as flat records (asset_key, input_sha256s, output_sha256, parameters, seed, ...)."""
        return [flat_record(e) for e in self.read_events(tenant, study)]

    # -- checkpoints -----------------------------------------------------------------------------
    def write_checkpoint(self, tenant: str, study: str, hashes: list[str]) -> dict[str, Any] | None:
        """Sign and store the RFC 6962 Merkle root over ``hashes`` (the chain's manifest hashes in
        order, as verification read them). None when the chain is empty or already checkpointed."""
        if not hashes:
            return None
        key = checkpoint_key(tenant, study, len(hashes))
        if self.backend.get(key) is not None:
            return None
        self.publish_key()
        doc = {"type": CHECKPOINT_TYPE, "tenant": tenant, "study": study, "tree_size": len(hashes),
               "root_hash": merkle_root(bytes.fromhex(h) for h in hashes).hex(),
               "head": {"sequence": len(hashes) - 1, "hash": hashes[-1]},
               "time": datetime.now(UTC).isoformat(), "key_id": self.signer.key_id}
        doc["signature"] = base64.b64encode(self.signer.sign(checkpoint_signing_bytes(doc))).decode()
        try:
            self.backend.put_new(key, canonical_json(doc).encode())
        except ObjectExistsError:
            return None
        return doc


class LocalLineageStore(ChainStore):
    """The embedded default: the chain's objects as read-only files under ``<lake>/lineage/``."""

    def __init__(self, lake_dir: Path, signer: LineageSigner | None = None) -> None:
        super().__init__(LocalBackend(lake_dir), signer)
        self.lake_dir = Path(lake_dir)

    def partition_dir(self, tenant: str, study: str) -> Path:
        return self.lake_dir / partition_prefix(tenant, study)


class S3LineageStore(ChainStore):
    """Manifests in an S3 bucket with Object Lock, each under COMPLIANCE retention."""

    def __init__(self, client: Any, bucket: str, retention_days: float, signer: LineageSigner | None = None) -> None:
        super().__init__(S3Backend(client, bucket, retention_days), signer)


def s3_client(endpoint_url: str | None) -> Any:
    """boto3 S3 client for the lineage bucket (path-style; credentials from the usual AWS variables)."""
    import boto3
    from botocore.config import Config

    # A fresh session: boto3's default session keeps the first credentials it resolved in the process.
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name="us-east-1",
                                          config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))


def open_store(settings: Settings | None = None, signer: LineageSigner | None = None) -> ChainStore:
    """The lineage store the settings choose (``lineage.store``: local or s3)."""
    s = settings or get_settings()
    if s.lineage.store == "s3":
        return S3LineageStore(s3_client(s.lineage.s3_endpoint_url), s.lineage.s3_bucket, s.lineage.s3_retention_days,
                              signer)
    return LocalLineageStore(s.lake_dir, signer)
