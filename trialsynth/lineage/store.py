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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trialsynth.hashing import canonical_json
from trialsynth.lineage.backends import (
    S3_READ_THREADS,
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


def name_hash(key: str) -> str | None:
    """The manifest hash a ``<seq>-<hash>.json`` key names (None for other keys)."""
    m = MANIFEST_NAME.match(key.rsplit("/", 1)[-1])
    return m[2] if m else None


@dataclass(frozen=True)
class ChainIndex:
    """What a listing of one partition says: claims and manifest keys per sequence, checkpoints."""

    manifests: dict[int, list[str]]  # sequence -> manifest keys (more than one only after a lost race)
    claims: dict[int, str]  # sequence -> its claim's key
    checkpoints: list[str]

    @property
    def length(self) -> int:
        """Sequences up to the last claimed one (gaps included)."""
        return max(self.claims) + 1 if self.claims else 0

    def resolve(self, sequence: int, claimed: str | None) -> str | None:
        """The manifest key of ``sequence`` whose name is the ``claimed`` hash."""
        return next((k for k in self.manifests.get(sequence, []) if name_hash(k) == claimed), None)


@dataclass(frozen=True)
class Link:
    """One sequence of a chain as the listing (and, where needed, its claim) says."""

    sequence: int
    claim: str | None  # the claim's key; None when no claim is listed (removed)
    manifest: str | None  # the claimed manifest's key; None when it is not listed
    hash: str | None  # the claimed hash; None when unknown
    from_claim: bool = False  # True when the claim object was read to learn it


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
        claims: dict[int, str] = {}
        checkpoints = []
        for key in sorted(listing):
            rest = key[len(prefix):]
            if m := MANIFEST_NAME.match(rest):
                manifests.setdefault(int(m[1]), []).append(key)
            elif rest.startswith("seq/") and len(rest) == 16 and rest[4:].isdigit():
                claims[int(rest[4:])] = key
            elif rest.startswith("checkpoints/") and rest.endswith(".json"):
                checkpoints.append(key)
        return ChainIndex(manifests, claims, checkpoints)

    def links(self, index: ChainIndex, read_claim: Callable[[str, int], str | None]) -> list[Link]:
        """Every sequence up to the last claimed one. A sequence's claimed hash is the name of its only
        manifest; ``read_claim(key, sequence)`` (the claimed hash, or None) is called only when there is
        none or more than one (a lost append race), so reading a chain costs one GET per manifest."""
        links = []
        for seq in range(index.length):
            claim, found = index.claims.get(seq), index.manifests.get(seq, [])
            if claim is None:
                links.append(Link(seq, None, None, None))
            elif len(found) == 1:
                links.append(Link(seq, claim, found[0], name_hash(found[0])))
            else:
                claimed = read_claim(claim, seq)
                links.append(Link(seq, claim, index.resolve(seq, claimed), claimed, from_claim=True))
        return links

    def fetch(self, listing: dict[str, KeyVersions], keys: list[str]) -> Iterator[StoredObject | None]:
        """The original (first) version of each of ``keys``, in order, read concurrently when the backend
        gains from it (S3 round trips; later versions can only be added around a locked original)."""
        def get(key: str) -> StoredObject | None:
            return self.backend.get(key, listing[key].original) if key in listing else None

        if self.backend.read_threads <= 1 or len(keys) <= 1:
            yield from map(get, keys)
            return
        with ThreadPoolExecutor(self.backend.read_threads) as pool:
            yield from pool.map(get, keys)

    def read_events(self, tenant: str, study: str) -> list[dict[str, Any]]:
        """The chain's manifests (RunEvent dicts) in sequence order, as first written; a claimed
        manifest that is missing is skipped (verification names it)."""
        listing = self.backend.scan(partition_prefix(tenant, study))

        def claimed_hash(key: str, _seq: int) -> str | None:
            (claim,) = self.fetch(listing, [key])
            return str(json.loads(claim.data)["hash"]) if claim is not None else None

        keys = [link.manifest for link in self.links(self.index(listing, tenant, study), claimed_hash) if link.manifest]
        events = []
        for key, stored in zip(keys, self.fetch(listing, keys), strict=True):
            if stored is None:
                continue
            try:
                events.append(json.loads(stored.data))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.location}/{key} is not valid JSON ({exc.msg})") from exc
        return events

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
                                          config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                                                        max_pool_connections=S3_READ_THREADS))


def open_store(settings: Settings | None = None, signer: LineageSigner | None = None) -> ChainStore:
    """The lineage store the settings choose (``lineage.store``: local or s3)."""
    s = settings or get_settings()
    if s.lineage.store == "s3":
        return S3LineageStore(s3_client(s.lineage.s3_endpoint_url), s.lineage.s3_bucket, s.lineage.s3_retention_days,
                              signer)
    return LocalLineageStore(s.lake_dir, signer)
