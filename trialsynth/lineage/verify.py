"""Independent verification of the lineage chains, naming the first broken link.

Checks, per tenant/study: every sequence is claimed and its manifest is there (nothing removed from
the middle), stored bytes are canonical, sequence / tenant / study / prev_hash links hold, each
hash recomputes, each Ed25519 signature verifies under a *trusted* key, every signed checkpoint
matches the chain (RFC 6962 Merkle root; a dropped tail or a rebuilt chain shows here), on S3 every
manifest, checkpoint and published key still has unexpired COMPLIANCE retention and no object was
overwritten or delete-marked, and the latest recorded hash of every output still matches the object
in the lake (or the warehouse partition's rows, DuckDB or ClickHouse) now. Problems that do not break
integrity (no git commit recorded, orphaned manifests of a lost append race, outputs that cannot be
re-read here, an S3 bucket without the no-delete policy) are warnings.

Cost per partition: one paged listing of its object versions and one read per manifest (concurrent on
S3: the GET returns the bytes and the Object Lock headers together), so time is linear in the chain.
Sequence claims are checked from the listing (present, one version, no delete marker) and read only
where a sequence has no or several manifests; their retention was read back when they were written,
and a claim removed later shows as a gap.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trialsynth.hashing import sha256_bytes
from trialsynth.lineage.keys import KeyRing, parse_public_key_document
from trialsynth.lineage.manifest import (
    FACET,
    GENESIS,
    canonical_bytes,
    git_sha_problem,
    stored_bytes,
)
from trialsynth.lineage.merkle import prefix_roots
from trialsynth.lineage.rows import (
    clickhouse_client,
    clickhouse_partition_sha256,
    duckdb_partition_sha256,
    warehouse_namespace,
)
from trialsynth.lineage.store import (
    KEYS_PREFIX,
    ROOT,
    ChainStore,
    checkpoint_signing_bytes,
    head_key,
    name_hash,
    partition_prefix,
)
from trialsynth.security.envelope import content_sha256
from trialsynth.settings import Settings


def _short(digest: object) -> str:
    return f"{str(digest)[:12]}..."


def check_manifest(event: dict[str, Any], sequence: int, prev_hash: str | None, tenant: str, study: str,
                   keyring: KeyRing | None) -> str | None:
    """None when ``event`` is a sound link at ``sequence`` after ``prev_hash`` (None: not known, after a
    gap) in tenant/study's chain, else what is wrong. Signatures are checked when ``keyring`` is given."""
    facet = (event.get("run", {}).get("facets") or {}).get(FACET)
    if not isinstance(facet, dict):
        return f"no {FACET} facet: not a trialsynth lineage manifest"
    if (facet.get("tenant"), facet.get("study")) != (tenant, study):
        return (f"manifest belongs to {facet.get('tenant')}/{facet.get('study')}'s chain, not {tenant}/{study}'s "
                "(copied from another partition)")
    if facet.get("sequence") != sequence:
        return f"manifest records sequence {facet.get('sequence')} at position {sequence} (removed, inserted or reordered)"
    if prev_hash is not None and facet.get("prev_hash") != prev_hash:
        return (f"prev_hash {_short(facet.get('prev_hash'))} does not match the previous manifest's hash "
                f"{_short(prev_hash)} (a manifest was removed, inserted or reordered)")
    body = canonical_bytes(event)
    if facet.get("hash") != sha256_bytes(body):
        return f"stored hash {_short(facet.get('hash'))} differs from the recomputed {_short(sha256_bytes(body))} (the manifest was edited)"
    if keyring is not None:
        try:
            signature = base64.b64decode(facet.get("signature") or "", validate=True)
        except binascii.Error:
            return "signature is not valid base64"
        return keyring.check(str(facet.get("key_id")), body, signature)
    return None


@dataclass(frozen=True)
class ChainReport:
    """Result of :func:`verify_chain` over an in-memory list of manifests."""

    records: int
    ok: bool
    broken_index: int | None = None  # 0-based index of the first bad record
    reason: str = ""

    def describe(self, records: list[dict[str, Any]]) -> str:
        if self.ok:
            return f"lineage chain intact: {self.records} records"
        rec = records[self.broken_index] if self.broken_index is not None and self.broken_index < len(records) else {}
        return (f"lineage chain BROKEN at record {self.broken_index + 1} of {self.records} "
                f"(asset {rec.get('asset_key')!r}, time {rec.get('time')!r}): {self.reason}")


def _event(record: dict[str, Any]) -> dict[str, Any]:
    return record.get("manifest", record)


def verify_chain(records: list[dict[str, Any]], keyring: KeyRing | None = None) -> ChainReport:
    """Walk manifests (RunEvents, or flat records from ``store.read``) from genesis; report the first
    whose link, hash or (with ``keyring``) signature does not hold."""
    if not records:
        return ChainReport(0, True)
    first = (_event(records[0]).get("run", {}).get("facets") or {}).get(FACET) or {}
    prev_hash = GENESIS
    for i, rec in enumerate(records):
        problem = check_manifest(_event(rec), i, prev_hash, str(first.get("tenant")), str(first.get("study")), keyring)
        if problem:
            return ChainReport(len(records), False, i, problem)
        prev_hash = _event(rec)["run"]["facets"][FACET]["hash"]
    return ChainReport(len(records), True)


@dataclass(frozen=True)
class Finding:
    """One broken link: where (partition, sequence, asset) and what failed."""

    partition: str
    sequence: int | None
    asset_key: str | None
    problem: str

    def describe(self) -> str:
        where = f"sequence {self.sequence}" if self.sequence is not None else "(whole partition)"
        asset = f", asset {self.asset_key!r}" if self.asset_key else ""
        return f"partition {self.partition}, {where}{asset}: {self.problem}"


@dataclass
class PartitionReport:
    tenant: str
    study: str
    name: str = ""  # set for the published keys, which belong to no partition
    manifests: int = 0
    checkpoints: int = 0
    outputs_checked: int = 0
    failures: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hashes: list[str | None] = field(default_factory=list)  # claimed manifest hashes, in order

    @property
    def partition(self) -> str:
        return self.name or f"{self.tenant}|{self.study}"

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> Finding | None:
        if not self.failures:
            return None
        return min(self.failures, key=lambda f: (f.sequence is None, f.sequence or 0))

    def fail(self, sequence: int | None, asset_key: str | None, problem: str) -> None:
        self.failures.append(Finding(self.partition, sequence, asset_key, problem))


@dataclass
class VerificationReport:
    location: str
    verified_at: datetime
    partitions: list[PartitionReport]
    warnings: list[str] = field(default_factory=list)
    keys: PartitionReport = field(default_factory=lambda: PartitionReport("", "", name="published keys"))

    @property
    def _all(self) -> list[PartitionReport]:
        return [self.keys, *self.partitions]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self._all)

    @property
    def first_failure(self) -> Finding | None:
        return next((p.first_failure for p in self._all if not p.ok), None)

    def describe(self) -> str:
        when = self.verified_at.isoformat(timespec="seconds")
        n = sum(p.manifests for p in self.partitions)
        totals = (f"{len(self.partitions)} partition(s), {n} manifests, {sum(p.checkpoints for p in self.partitions)} "
                  f"checkpoints, {sum(p.outputs_checked for p in self.partitions)} outputs re-hashed ({self.location})")
        if self.ok:
            lines = [f"lineage verified at {when}: {totals}, all intact"]
        else:
            broken = [p for p in self._all if not p.ok]
            lines = [f"lineage verification FAILED at {when}: {totals}",
                     f"first broken link: {self.first_failure.describe()}",
                     f"{sum(len(p.failures) for p in broken)} problem(s) in {len(broken)} partition(s):"]
            lines += [f"  - {f.describe()}" for p in broken for f in sorted(p.failures, key=_order)]
        warnings = self.warnings + [f"{p.partition}: {w}" for p in self._all for w in p.warnings]
        lines += [f"warning: {w}" for w in warnings]
        return "\n".join(lines)


def _order(f: Finding) -> tuple[bool, int]:
    return (f.sequence is None, f.sequence or 0)


class OutputUnreadableError(Exception):
    """A recorded output exists but cannot be read now (say, a view over a corrupted Parquet file)."""


class OutputChecker:
    """Re-hashes a recorded output as it is now: lake files, S3 objects, warehouse partition rows (a
    DuckDB file named in the manifest, or the ClickHouse warehouse of ``settings``)."""

    def __init__(self, s3_client: Any = None, settings: Settings | None = None) -> None:
        self.s3_client, self.settings = s3_client, settings
        self._lake: Any = None
        self._duckdb: dict[str, Any] = {}
        self._clickhouse: Any = None

    def current_sha256(self, output: dict[str, Any], tenant: str, study: str) -> str | None:
        """The output's sha256 now; None when it no longer exists; OutputUnreadableError when it exists but
        cannot be read; LookupError when this machine has no way to read it."""
        kind, namespace, name = output.get("kind"), str(output.get("namespace")), str(output.get("name"))
        if kind == "bytes" and namespace == "file":
            path = Path(name)
            try:
                return content_sha256(path) if path.is_file() else None  # envelopes: without the key slot
            except OSError as exc:
                raise OutputUnreadableError(str(exc)) from exc
        if kind == "bytes" and namespace.startswith("s3://") and (lake := self._lake_zone(namespace, name)):
            store, key = lake
            try:  # through the lake store: it sends the tenant's SSE-C key
                return content_sha256(store.read_bytes(key))
            except FileNotFoundError:
                return None
            except (OSError, RuntimeError, ValueError) as exc:  # refused, a publish not completed, an unopenable key
                raise OutputUnreadableError(str(exc).strip().splitlines()[0]) from exc
        if kind == "bytes" and namespace.startswith("s3://") and self.s3_client is not None:
            from botocore.exceptions import ClientError

            try:
                body = self.s3_client.get_object(Bucket=namespace[len("s3://"):], Key=name)["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                    return None
                raise
            return content_sha256(body)
        if kind == "rows" and namespace.startswith("duckdb://"):
            return self._duckdb_rows(Path(namespace[len("duckdb://"):]), name, tenant, study)
        if kind == "rows" and self.settings is not None and namespace == warehouse_namespace(self.settings) \
                and namespace.startswith("clickhouse://"):
            return self._clickhouse_rows(name, tenant, study)
        raise LookupError(f"no location recorded, or none readable here (kind {kind}, namespace {namespace})")

    def _lake_zone(self, namespace: str, name: str) -> tuple[Any, str] | None:
        """(lake store, lake key) when ``namespace``/``name`` is an object of the settings' S3 lake zone."""
        if self.settings is None or self.settings.lake.store != "s3":
            return None
        if self._lake is None:
            from trialsynth.storage import open_lake_store

            self._lake = open_lake_store(self.settings)
        root = self._lake.object_key("")
        if namespace != f"s3://{self._lake.bucket}" or not name.startswith(root):
            return None
        return self._lake, name[len(root):]

    def _duckdb_rows(self, database: Path, relation: str, tenant: str, study: str) -> str | None:
        import duckdb

        if not database.is_file():
            return None
        key = str(database)
        if key not in self._duckdb:
            try:
                self._duckdb[key] = duckdb.connect(key, read_only=True)
            except duckdb.Error as exc:  # another process holds the write lock
                raise LookupError(f"warehouse {database} cannot be opened read-only now ({exc})") from exc
        try:
            return duckdb_partition_sha256(self._duckdb[key], relation, tenant, study)
        except duckdb.CatalogException:
            return None
        except duckdb.Error as exc:
            raise OutputUnreadableError(str(exc).splitlines()[0]) from exc

    def _clickhouse_rows(self, relation: str, tenant: str, study: str) -> str | None:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        try:
            self._clickhouse = self._clickhouse or clickhouse_client(self.settings)
            return clickhouse_partition_sha256(self._clickhouse, relation, tenant, study)
        except OperationalError as exc:
            raise LookupError(f"ClickHouse warehouse cannot be reached now ({str(exc).splitlines()[0]})") from exc
        except DatabaseError as exc:
            if "UNKNOWN_TABLE" in str(exc) or "Code: 60." in str(exc):
                return None
            raise OutputUnreadableError(str(exc).strip().splitlines()[0]) from exc

    def close(self) -> None:
        for con in self._duckdb.values():
            con.close()
        self._duckdb.clear()
        if self._clickhouse is not None:
            self._clickhouse.close()
            self._clickhouse = None


def load_published_keys(store: ChainStore, keyring: KeyRing, report: PartitionReport, now: datetime) -> None:
    """Add the public keys published beside the chains to ``keyring`` (trust still comes from the
    ring), checking their objects like the chains' (overwrites, delete markers, retention)."""
    listing = store.backend.scan(KEYS_PREFIX)
    reader = _Reader(store, listing, report, now)
    for key in sorted(listing):
        data = reader.read(key, None)
        try:
            key_id, raw = parse_public_key_document(data or b"")
        except (ValueError, KeyError, TypeError) as exc:
            report.fail(None, None, f"published key {key} is unreadable ({exc})")
            continue
        if key_id in keyring.trusted_ids:
            keyring.add_public(key_id, raw)


class _Reader:
    """Reads the original (first) version of a partition's objects (:meth:`ChainStore.fetch`) and reports
    on the way when an object was overwritten or delete-marked or, on a WORM backend, when its
    COMPLIANCE retention is missing or expired. One GET per object gives its bytes and its retention."""

    def __init__(self, store: ChainStore, listing: dict[str, Any], report: PartitionReport, now: datetime) -> None:
        self.store, self.listing, self.report, self.now = store, listing, report, now
        self._checked_versions: set[str] = set()

    def check_versions(self, key: str, sequence: int | None) -> None:
        """What the listing alone shows about ``key`` (once per key): newer versions on top, delete markers."""
        if key in self._checked_versions:
            return
        self._checked_versions.add(key)
        versions = self.listing[key]
        if len(versions.version_ids) > 1:
            self.report.fail(sequence, None, f"{key} was overwritten ({len(versions.version_ids)} versions); "
                                             "the original locked version is the one verified")
        if versions.delete_markers:
            self.report.fail(sequence, None, f"{key} was deleted (delete marker); the original locked version "
                                             "is the one verified")

    def read_all(self, keys: list[str], sequences: list[int | None]) -> Iterator[bytes | None]:
        """The bytes of each listed key, in order, with its versions and retention checked."""
        for key, seq, obj in zip(keys, sequences, self.store.fetch(self.listing, keys), strict=True):
            yield self._checked(key, seq, obj)

    def read(self, key: str, sequence: int | None) -> bytes | None:
        if key not in self.listing:
            return None
        return next(self.read_all([key], [sequence]))

    def _checked(self, key: str, sequence: int | None, obj: Any) -> bytes | None:
        self.check_versions(key, sequence)
        if obj is None:
            self.report.fail(sequence, None, f"{key} is listed but cannot be read")
            return None
        if self.store.backend.worm:
            if obj.lock_mode != "COMPLIANCE" or obj.retain_until is None:
                self.report.fail(sequence, None, f"{key} has no COMPLIANCE retention (Object Lock mode {obj.lock_mode})")
            elif obj.retain_until <= self.now:
                self.report.fail(sequence, None, f"{key}: retention expired at {obj.retain_until.isoformat()}")
        return obj.data


def verify_partition(store: ChainStore, tenant: str, study: str, keyring: KeyRing, checker: OutputChecker,
                     now: datetime | None = None) -> PartitionReport:
    """All checks of the module docstring for one tenant/study (manifests checked as their reads arrive)."""
    report = PartitionReport(tenant, study)
    listing = store.backend.scan(partition_prefix(tenant, study))
    reader = _Reader(store, listing, report, now or datetime.now(UTC))
    index = store.index(listing, tenant, study)
    for key in index.claims.values():
        reader.check_versions(key, int(key[-12:]))
    links = store.links(index, lambda key, seq: _claimed_hash(reader, key, seq))
    report.manifests = len(links)
    report.hashes = [link.hash for link in links]
    prev: str | None = GENESIS
    latest_outputs: dict[tuple[str, str], tuple[int, str, dict[str, Any]]] = {}
    present = [link for link in links if link.manifest]
    stored = iter(reader.read_all([link.manifest for link in present], [link.sequence for link in present]))
    for link in links:
        seq = link.sequence
        if link.claim is None:
            report.fail(seq, None, "no manifest at this sequence (its claim is gone: removed from the middle)")
        elif link.hash and link.manifest is None:
            report.fail(seq, None, f"the claimed manifest {seq:012d}-{_short(link.hash)}.json is missing (removed?)")
        data = next(stored) if link.manifest else None
        if data is not None:
            _check_stored(data, link, prev, tenant, study, keyring, report, latest_outputs)
        prev = link.hash  # None after a gap: the next link cannot be checked, the gap is already reported
    _check_orphans(index, report)
    _check_head(store, tenant, study, report)
    _check_checkpoints(reader, index.checkpoints, keyring)
    _check_outputs(latest_outputs, checker, tenant, study, report)
    return report


def _claimed_hash(reader: _Reader, key: str, seq: int) -> str | None:
    data = reader.read(key, seq)
    try:
        claim = json.loads(data or b"")
        if claim["sequence"] != seq:
            raise ValueError(f"it names sequence {claim['sequence']}")
        return str(claim["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        reader.report.fail(seq, None, f"sequence claim {key} is unreadable or wrong ({exc})")
        return None


def _check_stored(data: bytes, link: Any, prev: str | None, tenant: str, study: str, keyring: KeyRing,
                  report: PartitionReport, latest_outputs: dict[tuple[str, str], tuple[int, str, dict[str, Any]]]) -> None:
    seq = link.sequence
    try:
        event = json.loads(data)
        facet = event["run"]["facets"][FACET]
    except (ValueError, KeyError, TypeError) as exc:
        report.fail(seq, None, f"manifest is not a readable RunEvent ({type(exc).__name__}: edited?)")
        return
    asset = facet.get("asset_key")
    if data != stored_bytes(event):
        report.fail(seq, asset, "stored bytes are not the manifest's canonical JSON (edited by hand?)")
    problem = check_manifest(event, seq, prev, tenant, study, keyring)
    if problem is None and facet.get("hash") != link.hash:
        named = "the sequence claim" if link.from_claim else f"its key {link.manifest}"
        problem = f"{named} names hash {_short(link.hash)} but the manifest's hash is {_short(facet.get('hash'))}"
    if problem:
        report.fail(seq, asset, problem)
    if (why := git_sha_problem(str(facet.get("git_sha")))) is not None:
        report.warnings.append(f"sequence {seq} ({asset}): {why}")
    for output in facet.get("outputs") or []:
        latest_outputs[(str(output.get("namespace")), str(output.get("name")))] = (seq, asset, output)


def _check_orphans(index: Any, report: PartitionReport) -> None:
    claimed = {h for h in report.hashes if h}
    for seq, keys in sorted(index.manifests.items()):
        for key in keys:
            if name_hash(key) not in claimed:
                why = "lost an append race or the append was interrupted" if seq in index.claims else "no claim for its sequence"
                report.warnings.append(f"orphan manifest {key} is not part of the chain ({why})")


def _check_head(store: ChainStore, tenant: str, study: str, report: PartitionReport) -> None:
    """The head hint only lags behind the chain (racing writers); ahead of it means the tail was cut."""
    hint = store.backend.get(head_key(tenant, study))
    try:
        hinted = int(json.loads(hint.data)["sequence"]) if hint is not None else -1
    except (ValueError, KeyError, TypeError):
        report.warnings.append("the head pointer HEAD.json is unreadable")
        return
    if hinted >= report.manifests:
        report.fail(report.manifests, None, f"the head pointer names sequence {hinted} but the chain ends at "
                                            f"{report.manifests - 1}: manifests at the tail were removed")


def _check_checkpoints(reader: _Reader, keys: list[str], keyring: KeyRing) -> None:
    report = reader.report
    if not keys:
        if report.manifests:
            report.warnings.append("no checkpoint yet: a dropped tail or a rebuilt chain is caught only after the first")
        return
    roots = list(prefix_roots(bytes.fromhex(h) if h else b"" for h in report.hashes))
    for key in keys:
        data = reader.read(key, None)
        try:
            doc = json.loads(data or b"")
            size, root, when = int(doc["tree_size"]), str(doc["root_hash"]), doc.get("time")
            signature = base64.b64decode(doc.get("signature") or "", validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            report.fail(None, None, f"checkpoint {key} is unreadable ({exc})")
            continue
        report.checkpoints += 1
        if (doc.get("tenant"), doc.get("study")) != (report.tenant, report.study) or not key.endswith(f"{size:012d}.json"):
            report.fail(None, None, f"checkpoint {key} is for {doc.get('tenant')}/{doc.get('study')} size {size}, not this chain")
        elif (why := keyring.check(str(doc.get("key_id")), checkpoint_signing_bytes(doc), signature)) is not None:
            report.fail(size - 1, None, f"checkpoint {key}: {why}")
        elif size > report.manifests:
            report.fail(report.manifests, None, f"checkpoint of {when} covers {size} manifests but the chain has "
                                                f"{report.manifests}: the tail was removed")
        elif roots[size - 1].hex() != root:
            report.fail(size - 1, None, f"the first {size} manifests do not match the checkpoint of {when} (Merkle root "
                                        f"{_short(roots[size - 1].hex())} vs signed {_short(root)}): the chain was "
                                        "rewritten or rebuilt at or before this sequence")


def _check_outputs(latest: dict[tuple[str, str], tuple[int, str, dict[str, Any]]], checker: OutputChecker,
                   tenant: str, study: str, report: PartitionReport) -> None:
    """The latest manifest naming each output must match the output as it is now (earlier manifests
    of the same output recorded earlier materializations)."""
    for (namespace, name), (seq, asset, output) in sorted(latest.items(), key=lambda kv: kv[1][0]):
        if output.get("sha256") is None:
            report.warnings.append(f"sequence {seq} ({asset}): output {name} was recorded without a hash")
            continue
        try:
            now_sha = checker.current_sha256(output, tenant, study)
        except LookupError as exc:
            report.warnings.append(f"sequence {seq} ({asset}): output {name} not re-checked: {exc}")
            continue
        except OutputUnreadableError as exc:
            report.fail(seq, asset, f"output {namespace}:{name} cannot be read now ({exc})")
            continue
        report.outputs_checked += 1
        if now_sha is None:
            report.fail(seq, asset, f"output {namespace}:{name} is missing from the lake now")
        elif now_sha != output["sha256"]:
            report.fail(seq, asset, f"output {namespace}:{name} changed after its manifest (recorded sha256 "
                                    f"{_short(output['sha256'])}, now {_short(now_sha)})")


def verify_store(store: ChainStore, keyring: KeyRing, checker: OutputChecker | None = None,
                 partitions: list[tuple[str, str]] | None = None, now: datetime | None = None) -> VerificationReport:
    """Verify ``partitions`` (default: every chain in the store)."""
    now = now or datetime.now(UTC)
    report = VerificationReport(store.location, now, [])
    load_published_keys(store, keyring, report.keys, now)
    checker = checker or OutputChecker()
    try:
        for tenant, study in partitions if partitions is not None else store.partitions():
            report.partitions.append(verify_partition(store, tenant, study, keyring, checker, now))
    finally:
        checker.close()
    if (why := store.backend.protection_problem(f"{ROOT}/")) is not None:
        report.warnings.append(why)
    if not store.backend.worm:
        report.warnings.append(f"{store.location} is a local store: no Object Lock retention to check "
                               "(files are read-only; the hash chain, signatures and checkpoints still hold)")
    return report


def checkpoint_verified(store: ChainStore, report: VerificationReport) -> list[dict[str, Any]]:
    """Sign a checkpoint for every partition that verified intact (never over a broken chain)."""
    done = []
    for p in report.partitions:
        if p.ok and (doc := store.write_checkpoint(p.tenant, p.study, [h for h in p.hashes if h])) is not None:
            done.append(doc)
    return done
