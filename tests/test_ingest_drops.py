"""Drop order and drop state: a study's bronze is always one whole drop, a failed drop is not run
again unless asked or its bytes change, and every drop's state is visible in the CLI."""

from __future__ import annotations

import functools
import os
import re

import dagster as dg
import polars as pl
import pytest

import trialsynth.runner as runner
from tests.conftest import make_drop
from trialsynth.cli import main
from trialsynth.demo.generator import generate_study, write_drop
from trialsynth.ingest.drops import DropRegistry, RunInfo, plan_study
from trialsynth.ingest.landing import open_drop


def ingest_only() -> set[dg.AssetKey]:
    """The raw zone and bronze assets: the part of the study pipeline that decides a drop's state."""
    from orchestration.definitions import defs

    return set(dg.AssetSelection.groups("ingest").resolve(defs.resolve_asset_graph()))


def stamp(path, seconds):
    os.utime(path / "_READY", ns=(seconds * 10**9, seconds * 10**9))
    return path


def truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.fixture
def ingest_cli(settings, monkeypatch):
    """``trialsynth ingest`` / ``drops`` with the runner limited to the ingest assets (fast)."""
    monkeypatch.setattr(runner, "process_landing_zone", functools.partial(runner.process_landing_zone, assets=ingest_only()))
    return settings


def drop_runs(drop_id: str) -> int:
    return len(dg.DagsterInstance.get().get_runs(filters=dg.RunsFilter(tags={"trialsynth/drop_id": drop_id})))


def test_failed_drop_then_good_drop_bronze_is_the_good_drop_and_the_failed_one_is_not_rerun(ingest_cli, capsys):
    settings = ingest_cli
    landing = settings.landing_dir
    bad = write_drop(generate_study("acme", "S1", n_subjects=16, n_sites=2, seed=1), landing, "acme", "S1", drop_id="drop-001")
    for name in ("dm.csv", "vs.csv", "lb.csv"):  # three cut files: the failure message is long
        truncate(bad / name)
    stamp(bad, 100)
    stamp(write_drop(generate_study("acme", "S1", n_subjects=20, n_sites=2, seed=2), landing, "acme", "S1",
                     drop_id="drop-002"), 200)

    assert main(["ingest"]) == 1  # a drop failed
    out = capsys.readouterr().out
    assert out.index("drop drop-001 (arrival 1): running") < out.index("drop drop-002 (arrival 2): running")
    failure = out[out.index("step bronze failed"):out.index("drop drop-001 failed: not ingested")]
    assert all(f"{name}: truncated" in failure for name in ("dm.csv", "vs.csv", "lb.csv")), failure  # whole, not cut

    def bronze_state():
        bronze = settings.lake_dir / "acme" / "S1" / "bronze"
        frames = {p.name: pl.read_parquet(p) for p in bronze.glob("*.parquet")}
        drop_ids = {i for f in frames.values() if "_drop_id" in f.columns for i in f["_drop_id"].unique()}
        pointer = (settings.lake_dir / "acme" / "S1" / "raw_pointer.json").read_text()
        return drop_ids, sum(f.height for f in frames.values()), pointer

    first = bronze_state()
    assert first[0] == {"drop-002"} and '"drop_id": "drop-002"' in first[2]

    # another call: nothing runs; drop-001 is not re-run and bronze stays entirely drop-002
    assert main(["ingest", "--tenant", "acme"]) == 0
    out = capsys.readouterr().out
    assert "running" not in out and out.count("SKIPPED") == 2
    assert "drop drop-001 failed" in out and "trialsynth drops retry --tenant acme --study S1 --drop drop-001" in out
    assert bronze_state() == first and drop_runs("drop-001") == 1

    registry = DropRegistry(settings.lake_dir, "acme", "S1")
    states = {r.drop_id: r for r in registry.records()}
    assert states["drop-001"].state == "failed" and "dm.csv" in states["drop-001"].reason
    assert states["drop-002"].state == "ingested" and registry.current().drop_id == "drop-002"
    assert states["drop-002"].raw_version == 1 and states["drop-002"].run_id

    assert main(["drops", "list", "--tenant", "acme", "--study", "S1"]) == 0
    out = capsys.readouterr().out
    rows = [re.match(r"\s+(\*\s+)?\d+\s+(drop-\d+)\s", line) for line in out.splitlines()]
    listed = {m.group(2): m.string for m in rows if m}
    assert listed["drop-002"].lstrip().startswith("*") and "ingested" in listed["drop-002"]
    assert states["drop-002"].run_id in listed["drop-002"] and states["drop-002"].content_hash[:16] in listed["drop-002"]
    assert "failed" in listed["drop-001"] and "why: step bronze failed" in out and "bronze holds drop-002" in out

    # an explicit retry of the older drop must say so; then it runs (and fails again: same bytes)
    assert main(["drops", "retry", "--tenant", "acme", "--study", "S1", "--drop", "drop-001"]) == 2
    assert "--allow-older" in capsys.readouterr().err
    assert main(["drops", "retry", "--tenant", "acme", "--study", "S1", "--drop", "drop-001", "--allow-older"]) == 1
    assert drop_runs("drop-001") == 2 and bronze_state() == first
    retried = registry.latest("drop-001")
    assert (retried.state, retried.attempt, retried.retry) == ("failed", 1, False)


def ready(*drops):
    return [(d, d.content_hash()) for d in drops]


def test_plan_orders_by_arrival_supersedes_older_drops_and_reruns_changed_bytes(tmp_path):
    landing, registry = tmp_path / "landing", DropRegistry(tmp_path / "lake", "acme", "S1")
    runs: dict[str, RunInfo] = {}

    def plan(*drops):
        return plan_study(registry, ready(*drops), lambda record: runs.get(record.run_key))

    def drop(drop_id, body, when):
        stamp(make_drop(landing, "acme", "S1", drop_id, {"dm.csv": body}), when)
        return open_drop(landing, "acme", "S1", drop_id)

    # first seen in one scan: ordered by marker time, then drop id
    b, a, c = drop("b", b"1\n", 100), drop("a", b"2\n", 100), drop("c", b"3\n", 50)
    first = plan(a, b, c)
    assert [(r.drop_id, r.arrival) for r in first.records] == [("c", 1), ("a", 2), ("b", 3)] and first.next.drop_id == "c"
    # b was ingested meanwhile (a run from the UI): c and a, older than b, are superseded, not run
    runs[registry.latest("b").run_key] = RunInfo("run-b", finished=True, ingested=True, ended_at=10.0)
    second = plan(a, b, c)
    assert second.next is None and second.current.drop_id == "b"
    assert {r.drop_id: r.state for r in second.records} == {"c": "superseded", "a": "superseded", "b": "ingested"}
    assert "arrived before drop b" in registry.latest("a").reason
    # a drop seen later arrives later, whatever its marker time says (copies keep old times)
    late = drop("late", b"4\n", 1)
    assert plan(a, b, c, late).next.drop_id == "late"
    runs[registry.latest("late").run_key] = RunInfo("run-late", finished=True, ingested=False, reason="step bronze failed: x")
    assert plan(a, b, c, late).next is None and registry.latest("late").describe() == "failed: step bronze failed: x"
    # a failed drop runs again once its bytes change (a new arrival)
    (landing / "acme" / "S1" / "late" / "dm.csv").write_bytes(b"4 fixed\n")
    late = open_drop(landing, "acme", "S1", "late")
    fixed = plan(a, b, c, late)
    assert fixed.next.drop_id == "late" and fixed.next.arrival == 5 and fixed.next.content_hash != registry.records()[3].content_hash
    # ... while the bytes it had before stay failed, and bytes replaced before they ran are superseded
    (landing / "acme" / "S1" / "late" / "dm.csv").write_bytes(b"4 fixed again\n")
    late = open_drop(landing, "acme", "S1", "late")
    again = plan(a, b, c, late)
    assert [r.state for r in again.records if r.drop_id == "late"] == ["failed", "superseded", "pending"]
    assert "its bytes changed before it ran" in again.records[4].reason


def test_retry_of_an_older_drop_needs_allow_older_and_gets_a_new_run_key(tmp_path):
    landing, registry = tmp_path / "landing", DropRegistry(tmp_path / "lake", "acme", "S1")
    stamp(make_drop(landing, "acme", "S1", "old", {"dm.csv": b"1\n"}), 1)
    stamp(make_drop(landing, "acme", "S1", "new", {"dm.csv": b"2\n"}), 2)
    old, new = open_drop(landing, "acme", "S1", "old"), open_drop(landing, "acme", "S1", "new")
    runs = {}
    plan_study(registry, ready(old, new), lambda r: runs.get(r.run_key))
    runs[registry.latest("old").run_key] = RunInfo("r1", finished=True, ingested=False, reason="boom")
    runs[registry.latest("new").run_key] = RunInfo("r2", finished=True, ingested=True, ended_at=5.0)
    plan_study(registry, ready(old, new), lambda r: runs.get(r.run_key))
    plan_study(registry, ready(old, new), lambda r: runs.get(r.run_key))
    with pytest.raises(ValueError, match="arrived before drop new.*--allow-older"):
        registry.request_retry("old")
    with pytest.raises(ValueError, match="no drop 'nope'"):
        registry.request_retry("nope")
    retried = registry.request_retry("old", allow_older=True)
    assert retried.run_key.endswith(":retry-1") and retried.state == "pending"
    plan = plan_study(registry, ready(old, new), lambda r: runs.get(r.run_key))
    assert plan.next.drop_id == "old" and plan.next.attempt == 1  # not superseded: it was asked for
    with pytest.raises(ValueError, match="already pending"):
        registry.request_retry("old")


def test_a_landed_drop_whose_run_is_gone_is_failed_and_can_be_retried(tmp_path):
    landing, registry = tmp_path / "landing", DropRegistry(tmp_path / "lake", "acme", "S1")
    stamp(make_drop(landing, "acme", "S1", "d1", {"dm.csv": b"1\n"}), 1)
    drop = open_drop(landing, "acme", "S1", "d1")
    registry.landed(drop, drop.content_hash(), 1, "run-from-a-wiped-instance")
    plan = plan_study(registry, ready(drop), lambda r: None)
    assert plan.next is None and "is not in this Dagster instance" in registry.latest("d1").reason
    registry.request_retry("d1")
    assert plan_study(registry, ready(drop), lambda r: None).next.attempt == 1
