"""The drop registry: the state of every drop of a study, and which drop runs next.

One small SQLite file per study, ``<lake>/<tenant>/<study>/_drops.sqlite`` (stdlib ``sqlite3``; safe
for the sensor daemon, run workers and the CLI writing at once), one row per *(drop id, content hash)*:
the same drop id with new bytes is a new row. No Dagster here: run outcomes come in through a
``run_info`` callable (:func:`orchestration.sensors.plan_landing` asks the Dagster instance).

States (``trialsynth drops list`` and the Dagster UI show them with their reason):

============  ==================================================================================
pending       complete in the landing zone, waiting for its turn (also after a retry was asked)
landed        copied into the raw zone by a run that has not finished yet
ingested      its run wrote the study's bronze from it; the newest ingested drop is *current*
failed        its run ended before bronze was written (reason: the failed steps' messages); it is
              not run again until its bytes change or ``trialsynth drops retry`` asks for it
superseded    never run: a newer drop is already in bronze, or its bytes changed before it ran
duplicate     never run: the same bytes as an earlier drop of the study (the redelivery of a drop)
============  ==================================================================================

**Order.** Drops are ordered by *arrival*: a number given to a (drop id, content hash) the first
time the landing zone shows it complete; drops first seen in the same scan are numbered by their
ready marker's modification time, then by drop id. Arrival never changes afterwards (re-touching a
marker or copying with preserved times does not reorder drops); new bytes under an old drop id are a
new arrival.

**One at a time, in order.** :func:`plan_study` runs a study's pending drops one after the other
in arrival order, never while a run of the study is in flight. A pending drop older than the current
drop is superseded instead of run, so a study's bronze only moves forward and is always one drop (the
bronze write is all-or-nothing, see :mod:`trialsynth.ingest.pipeline`). ``drops retry`` of a drop older
than the current one must say ``allow_older``: its run then replaces the whole bronze with that drop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path

from trialsynth.ingest.landing import Drop
from trialsynth.markdown import md_table
from trialsynth.names import partition_key, validate_name

REGISTRY_FILE = "_drops.sqlite"
PENDING, LANDED, INGESTED, FAILED, SUPERSEDED, DUPLICATE = (
    "pending", "landed", "ingested", "failed", "superseded", "duplicate")
STATES = (PENDING, LANDED, INGESTED, FAILED, SUPERSEDED, DUPLICATE)
_OPEN = (PENDING, LANDED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drops (
    drop_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    arrival INTEGER NOT NULL UNIQUE,
    ready_ns INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    raw_version INTEGER,
    run_id TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    retry INTEGER NOT NULL DEFAULT 0,
    ingested_at REAL,
    updated TEXT NOT NULL,
    PRIMARY KEY (drop_id, content_hash)
);
CREATE TABLE IF NOT EXISTS hashes (drop_id TEXT PRIMARY KEY, signature TEXT NOT NULL, content_hash TEXT NOT NULL);
"""


@dataclass(frozen=True)
class DropRecord:
    """One (drop id, content hash) of a study and what happened to it."""

    tenant: str
    study: str
    drop_id: str
    content_hash: str
    arrival: int
    ready_ns: int
    first_seen: str
    state: str
    reason: str
    raw_version: int | None
    run_id: str | None
    attempt: int  # 0, then +1 per ``drops retry``
    retry: bool  # a retry was asked and has not run yet
    ingested_at: float | None  # when its run finished writing bronze (Unix time)
    updated: str

    @property
    def partition_key(self) -> str:
        return partition_key(self.tenant, self.study)

    @property
    def run_key(self) -> str:
        """Dagster run key: the content hash (a redelivery under another drop id has the same key),
        plus the attempt number once a retry was asked."""
        return f"{self.partition_key}:{self.content_hash}" + (f":retry-{self.attempt}" if self.attempt else "")

    def describe(self) -> str:
        return f"{self.state}: {self.reason}" if self.reason else self.state


_COLUMNS = [f.name for f in fields(DropRecord) if f.name not in ("tenant", "study")]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DropRegistry:
    """The registry of one tenant/study (names validated; the file is created on first use)."""

    def __init__(self, lake_dir: Path, tenant: str, study: str) -> None:
        self.tenant, self.study = validate_name(tenant, "tenant"), validate_name(study, "study")
        self.path = lake_dir / tenant / study / REGISTRY_FILE

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            con.executescript(_SCHEMA)
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def _record(self, row: Sequence) -> DropRecord:
        values = dict(zip(_COLUMNS, row, strict=True))
        return DropRecord(self.tenant, self.study, **{**values, "retry": bool(values["retry"])})

    def records(self) -> list[DropRecord]:
        """Every drop of the study, in arrival order."""
        if not self.path.exists():
            return []
        with self._db() as con:
            rows = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM drops ORDER BY arrival").fetchall()
        return [self._record(r) for r in rows]

    def latest(self, drop_id: str) -> DropRecord | None:
        """The newest record (bytes) of a drop id."""
        return next((r for r in reversed(self.records()) if r.drop_id == drop_id), None)

    def current(self) -> DropRecord | None:
        """The drop the study's bronze holds: the one ingested last."""
        ingested = [r for r in self.records() if r.state == INGESTED]
        return max(ingested, key=lambda r: (r.ingested_at or 0.0, r.arrival), default=None)

    def observe(self, drop_id: str, content_hash: str, ready_ns: int) -> DropRecord:
        """The record of these bytes of ``drop_id``; a new one gets the next arrival number."""
        with self._db() as con:
            now = _now()
            con.execute(
                "INSERT OR IGNORE INTO drops (drop_id, content_hash, arrival, ready_ns, first_seen, state, updated) "
                "SELECT ?, ?, COALESCE(MAX(arrival), 0) + 1, ?, ?, ?, ? FROM drops",
                (drop_id, content_hash, ready_ns, now, PENDING, now))
            row = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM drops WHERE drop_id = ? AND content_hash = ?",
                              (drop_id, content_hash)).fetchone()
        return self._record(row)

    def update(self, record: DropRecord, **changes: object) -> DropRecord:
        changes["updated"] = _now()
        with self._db() as con:
            con.execute(f"UPDATE drops SET {', '.join(f'{k} = ?' for k in changes)} WHERE drop_id = ? AND content_hash = ?",
                        (*changes.values(), record.drop_id, record.content_hash))
        return replace(record, **changes)

    def landed(self, drop: Drop, content_hash: str, raw_version: int, run_id: str) -> DropRecord:
        """Called by the raw zone asset once the drop's bytes are in the raw zone."""
        record = self.observe(drop.drop_id, content_hash, drop.ready_ns())
        return self.update(record, state=LANDED, reason="", raw_version=raw_version, run_id=run_id)

    def content_hash(self, drop: Drop) -> str:
        """``drop.content_hash()``, read again only when :meth:`Drop.signature` changed."""
        signature = drop.signature()
        with self._db() as con:
            row = con.execute("SELECT signature, content_hash FROM hashes WHERE drop_id = ?", (drop.drop_id,)).fetchone()
        if row and row[0] == signature:
            return row[1]
        content_hash = drop.content_hash()
        with self._db() as con:
            con.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?)", (drop.drop_id, signature, content_hash))
        return content_hash

    def request_retry(self, drop_id: str, allow_older: bool = False) -> DropRecord:
        """Mark the newest bytes of ``drop_id`` to run again (next ``trialsynth ingest`` or sensor tick)."""
        record = self.latest(drop_id)
        if record is None:
            known = ", ".join(sorted({r.drop_id for r in self.records()})) or "none"
            raise ValueError(f"no drop {drop_id!r} recorded for {self.tenant}/{self.study} (known drops: {known}); "
                             "`trialsynth drops list` shows them")
        if record.state in _OPEN:
            raise ValueError(f"drop {drop_id} of {self.tenant}/{self.study} is already {record.state}: it runs "
                             "without a retry")
        current = self.current()
        if current is not None and record.arrival < current.arrival and not allow_older:
            raise ValueError(
                f"drop {drop_id} arrived before drop {current.drop_id}, which the bronze of {self.tenant}/{self.study} "
                f"holds now; its run would replace that bronze with {drop_id} as a whole (never a mix). Pass "
                "--allow-older to do that")
        return self.update(record, state=PENDING, retry=1, attempt=record.attempt + 1, run_id=None,
                           reason=f"retry {record.attempt + 1} requested at {_now()} (was {record.describe()})")


@dataclass(frozen=True)
class RunInfo:
    """What the orchestrator knows about the run of a drop."""

    run_id: str
    finished: bool
    ingested: bool = False  # the raw zone and bronze steps both succeeded
    reason: str = ""  # why not, when finished and not ingested
    ended_at: float | None = None


@dataclass
class StudyPlan:
    tenant: str
    study: str
    records: list[DropRecord]
    next: DropRecord | None  # the drop to run now
    in_flight: DropRecord | None  # a drop whose run has not finished: nothing else of the study runs
    current: DropRecord | None
    changes: list[str]  # state changes made by this evaluation, one sentence each
    ready: set[tuple[str, str]]  # (drop id, content hash) of the drops complete in the landing zone now

    def describe(self) -> str:
        counts = {s: sum(r.state == s for r in self.records) for s in STATES}
        parts = [f"{n} {s}" for s, n in counts.items() if n]
        where = f"bronze holds {self.current.drop_id}" if self.current else "no bronze yet"
        busy = f"; waiting for the run of {self.in_flight.drop_id}" if self.in_flight else ""
        return f"{self.tenant}/{self.study}: {where}; {', '.join(parts) or 'no drops'}{busy}"


def plan_study(registry: DropRegistry, ready: Sequence[tuple[Drop, str]],
               run_info: Callable[[DropRecord], RunInfo | None]) -> StudyPlan:
    """Record the study's complete drops (``ready``: drop and content hash), settle the drops whose
    run finished, supersede what is too old, and say which drop runs next (at most one)."""
    for drop, content_hash in sorted(ready, key=lambda r: (r[0].ready_ns(), r[0].drop_id)):
        registry.observe(drop.drop_id, content_hash, drop.ready_ns())
    ready_now = {(d.drop_id, h) for d, h in ready}
    changes: list[str] = []
    latest = {(r.drop_id, r.content_hash): r for r in registry.records()}

    def settle(record: DropRecord, **change: object) -> None:
        latest[(record.drop_id, record.content_hash)] = new = registry.update(record, **change)
        changes.append(f"{new.partition_key} drop {new.drop_id}: {new.describe()}")

    in_flight = None
    for record in list(latest.values()):
        if record.state not in _OPEN:
            continue
        twin = next((r for r in latest.values() if r.content_hash == record.content_hash
                     and r.arrival < record.arrival and r.state != SUPERSEDED), None)
        if twin is not None and not record.retry:
            if twin.state not in _OPEN:
                settle(record, state=DUPLICATE, reason=f"same bytes as drop {twin.drop_id} ({twin.state}"
                       f"{', run ' + twin.run_id if twin.run_id else ''}); not ingested again")
                continue
            if twin.state == LANDED or (twin.drop_id, twin.content_hash) in ready_now:
                continue  # its twin runs first (with the same run key)
        info = run_info(record)
        if info is None:
            if record.state == LANDED:  # the raw zone asset recorded a run the instance does not have
                settle(record, state=FAILED, reason=f"its run {record.run_id} is not in this Dagster instance "
                       "(DAGSTER_HOME changed or reset?)")
            continue
        if not info.finished:
            in_flight = record
        elif info.ingested:
            settle(record, state=INGESTED, reason="", run_id=info.run_id, retry=0, ingested_at=info.ended_at)
        else:
            settle(record, state=FAILED, reason=info.reason, run_id=info.run_id, retry=0)

    current = max((r for r in latest.values() if r.state == INGESTED),
                  key=lambda r: (r.ingested_at or 0.0, r.arrival), default=None)
    for record in list(latest.values()):
        if record.state != PENDING or record.retry or record is in_flight:
            continue
        newer_bytes = next((r for r in latest.values() if r.drop_id == record.drop_id and r.arrival > record.arrival), None)
        if (record.drop_id, record.content_hash) not in ready_now and newer_bytes is not None:
            settle(record, state=SUPERSEDED, reason=f"its bytes changed before it ran (now content {newer_bytes.content_hash[:12]})")
        elif current is not None and record.arrival < current.arrival:
            settle(record, state=SUPERSEDED, reason=f"arrived before drop {current.drop_id}, which the study's bronze "
                   f"already holds (`trialsynth drops retry --allow-older` runs it anyway)")
    records = sorted(latest.values(), key=lambda r: r.arrival)
    waiting = [r for r in records if r.state == PENDING and (r.drop_id, r.content_hash) in ready_now]
    return StudyPlan(registry.tenant, registry.study, records, None if in_flight or not waiting else waiting[0],
                     in_flight, current, changes, ready_now)


def drops_markdown(records: Sequence[DropRecord]) -> str:
    """The drops of a study as a Markdown table (Dagster metadata)."""
    return md_table([{"arrival": r.arrival, "drop": r.drop_id, "state": r.state, "why": r.reason,
                      "raw version": r.raw_version, "content hash": r.content_hash[:16], "run": r.run_id}
                     for r in records])


def study_registries(lake_dir: Path) -> list[DropRegistry]:
    """Every study of the lake that has a drop registry, sorted by tenant and study."""
    return [DropRegistry(lake_dir, p.parent.parent.name, p.parent.name)
            for p in sorted(lake_dir.glob(f"*/*/{REGISTRY_FILE}"))] if lake_dir.is_dir() else []
