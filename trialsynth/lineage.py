"""Hash-chained lineage log, one per tenant/study.

Every materialization appends a record naming the asset, the partition, the sha256 of each input
and of the output, the code version, parameters, seed and time. Each record stores the previous
record's hash and its own hash over all of that, so editing, deleting or reordering any record
breaks the chain at that point, and :func:`verify_chain` names the first broken link.

The store sits behind :class:`LineageStore`; :class:`LocalLineageStore` (JSON lines under the lake,
appends serialized with an advisory file lock) is the embedded default. An S3 Object Lock store
implements the same two methods.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from trialsynth.hashing import canonical_json, sha256_bytes
from trialsynth.names import validate_name

GENESIS = "0" * 64
RECORD_FIELDS = (
    "asset_key", "partition", "input_sha256s", "output_sha256", "code_version",
    "parameters", "seed", "time", "prev_hash",
)  # fmt: skip


def record_hash(record: dict[str, Any]) -> str:
    """sha256 over the record's fields (everything but ``hash``), canonical JSON."""
    return sha256_bytes(canonical_json({k: record.get(k) for k in RECORD_FIELDS}).encode())


class LineageStore(Protocol):
    def read(self, tenant: str, study: str) -> list[dict[str, Any]]: ...

    def append(self, tenant: str, study: str, record: dict[str, Any]) -> dict[str, Any]:
        """Chain ``record`` onto the log (setting prev_hash, time, hash) and return it."""
        ...


def chain_record(prev: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(RECORD_FIELDS)
    if unknown:
        raise ValueError(f"unknown lineage fields: {sorted(unknown)}")
    record = {
        "asset_key": fields["asset_key"],
        "partition": fields.get("partition"),
        "input_sha256s": dict(fields.get("input_sha256s") or {}),
        "output_sha256": fields.get("output_sha256"),
        "code_version": fields.get("code_version"),
        "parameters": fields.get("parameters") or {},
        "seed": fields.get("seed"),
        "time": fields.get("time") or datetime.now(UTC).isoformat(),
        "prev_hash": prev["hash"] if prev else GENESIS,
    }
    # Round-trip through JSON so the hash is over exactly what a reader will see.
    record = json.loads(canonical_json(record))
    record["hash"] = record_hash(record)
    return record


class LocalLineageStore:
    """``<lake>/<tenant>/<study>/lineage/lineage.jsonl``."""

    def __init__(self, lake_dir: Path) -> None:
        self.lake_dir = Path(lake_dir)

    def path(self, tenant: str, study: str) -> Path:
        return self.lake_dir / validate_name(tenant, "tenant") / validate_name(study, "study") / "lineage" / "lineage.jsonl"

    def read(self, tenant: str, study: str) -> list[dict[str, Any]]:
        path = self.path(tenant, study)
        if not path.exists():
            return []
        records = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
        return records

    def append(self, tenant: str, study: str, record: dict[str, Any]) -> dict[str, Any]:
        path = self.path(tenant, study)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            lines = fh.read().splitlines()
            prev = json.loads(lines[-1]) if lines else None
            chained = chain_record(prev, record)
            fh.write(json.dumps(chained, sort_keys=True) + "\n")
            fh.flush()
        return chained


@dataclass(frozen=True)
class ChainReport:
    records: int
    ok: bool
    broken_index: int | None = None  # 0-based index of the first bad record
    reason: str = ""

    def describe(self, records: list[dict[str, Any]]) -> str:
        if self.ok:
            return f"lineage chain intact: {self.records} records"
        rec = records[self.broken_index] if self.broken_index is not None and self.broken_index < len(records) else {}
        return (
            f"lineage chain BROKEN at record {self.broken_index + 1} of {self.records} "
            f"(asset {rec.get('asset_key')!r}, time {rec.get('time')!r}): {self.reason}"
        )


def verify_chain(records: list[dict[str, Any]]) -> ChainReport:
    """Walk the chain from genesis; report the first record whose link or hash does not hold."""
    prev_hash = GENESIS
    for i, rec in enumerate(records):
        if rec.get("prev_hash") != prev_hash:
            return ChainReport(len(records), False, i, f"prev_hash {str(rec.get('prev_hash'))[:12]}... does not match "
                               f"the previous record's hash {prev_hash[:12]}... (a record was removed, inserted or reordered)")
        expected = record_hash(rec)
        if rec.get("hash") != expected:
            return ChainReport(len(records), False, i, f"stored hash {str(rec.get('hash'))[:12]}... differs from the "
                               f"recomputed {expected[:12]}... (the record was edited)")
        prev_hash = rec["hash"]
    return ChainReport(len(records), True)
