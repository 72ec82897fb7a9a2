"""Only regular files physically inside a drop are read: links, hard links, FIFOs, sub-directories and
linked tenant/study/drop folders are refused with a clear message, never copied, and fail the drop as
a whole, so nothing of another tenant can reach a tenant's raw zone or bronze."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time

import dagster as dg
import pytest

from orchestration.resources import LakeResource
from orchestration.sensors import landing_sensor
from tests.conftest import make_drop
from tests.test_ingest_drops import ingest_only
from trialsynth.demo.generator import generate_study, write_drop
from trialsynth.hashing import sha256_file
from trialsynth.ingest.landing import UnsafeDropError, open_drop, scan_ready_drops
from trialsynth.ingest.raw_zone import MANIFEST, land_drop
from trialsynth.runner import process_landing_zone

DM = b"STUDYID,DOMAIN,USUBJID,SUBJID,SITEID,AGE,SEX,ARMCD,ARM,RFSTDTC\nS1,DM,S1-001,001,701,63,F,PBO,Placebo,2024-01-05\n"


def land(tmp_path, prepare):
    """A drop t1/S1/d1 with a good dm.csv, ``prepare(drop_dir)`` adding entries before _READY, landed."""
    path = make_drop(tmp_path / "landing", "t1", "S1", "d1", {"dm.csv": DM}, ready=False)
    prepare(path)
    (path / "_READY").touch()
    return land_drop(open_drop(tmp_path / "landing", "t1", "S1", "d1"), tmp_path / "raw")


def test_symlink_to_etc_passwd_is_refused_and_never_copied(tmp_path):
    raw = land(tmp_path, lambda d: (d / "passwd.csv").symlink_to("/etc/passwd"))
    assert raw.files.keys() == {"dm.csv"} and not raw.file_path("passwd.csv").exists()
    assert raw.refused["passwd.csv"].startswith("symbolic link to '/etc/passwd': only regular files physically inside")
    manifest = json.loads(raw.file_path(MANIFEST).read_text())
    assert manifest["refused"] == raw.refused and "passwd.csv" not in manifest["files"]
    assert "refused as a whole, nothing of it is ingested: passwd.csv: symbolic link" in raw.refusal_message()
    # taking the link away is new bytes for the drop: it is ingested as such
    (tmp_path / "landing" / "t1" / "S1" / "d1" / "passwd.csv").unlink()
    again = land_drop(open_drop(tmp_path / "landing", "t1", "S1", "d1"), tmp_path / "raw")
    assert again.version == 2 and not again.refused and again.content_hash != raw.content_hash


def _hard_link(d):
    outside = d.parent / "outside.csv"
    outside.write_bytes(DM)
    os.link(outside, d / "ae.csv")


@pytest.mark.parametrize(
    ("prepare", "name", "message"),
    [
        (lambda d: (d / "vs.csv").symlink_to("dm.csv"), "vs.csv", "symbolic link to 'dm.csv'"),  # even inside the drop
        (_hard_link, "ae.csv", "hard link (2 names for one file)"),
        (lambda d: (d / "lb").mkdir() or (d / "lb" / "lb.csv").write_bytes(DM), "lb", "sub-directory: its contents are not read"),
        (lambda d: os.mkfifo(d / "sv.csv"), "sv.csv", "named pipe (FIFO): only regular files are read"),
        (lambda d: (d / "_manifest.json").write_text("{}"), "_manifest.json", "the name _manifest.json is reserved"),
        (lambda d: (d / "ae\n.csv").write_bytes(DM), "ae\n.csv", "file name 'ae\\n.csv' has control characters"),
    ],
)
def test_non_regular_entries_are_refused_with_a_message(tmp_path, prepare, name, message):
    raw = land(tmp_path, prepare)
    assert raw.refused == {name: raw.refused[name]} and raw.refused[name].startswith(message)
    assert sorted(p.name for p in raw.path.iterdir()) == [MANIFEST, "dm.csv"]


def test_hidden_files_are_ignored_and_listed(tmp_path):
    raw = land(tmp_path, lambda d: (d / ".DS_Store").write_bytes(b"\0"))
    assert not raw.refused and json.loads(raw.file_path(MANIFEST).read_text())["ignored"] == {".DS_Store": "hidden: not read"}


def test_a_fifo_never_blocks_the_scan_the_landing_or_the_sensor(settings):
    drop = make_drop(settings.landing_dir, "t1", "S1", "d1", {"dm.csv": DM}, ready=False)
    os.mkfifo(drop / "vs.csv")
    os.mkfifo(drop / "manifest.json")  # a marker name: never opened either
    (drop / "_READY").touch()
    done = threading.Event()

    def rescue():  # should anything open the FIFO for reading and block, a writer frees it after 20 s
        if not done.wait(20):
            for fifo in ("vs.csv", "manifest.json"):
                with contextlib.suppress(OSError):  # no reader waiting on it
                    os.close(os.open(drop / fifo, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=rescue, daemon=True).start()
    start = time.monotonic()
    (found,), _ = scan_ready_drops(settings.landing_dir)
    raw = land_drop(found, settings.raw_dir)
    with dg.instance_for_test() as instance:
        result = landing_sensor(dg.build_sensor_context(instance=instance, resources={"lake": LakeResource()}))
    done.set()
    assert time.monotonic() - start < 20
    assert raw.refused.keys() == {"vs.csv"} and [r.tags["trialsynth/drop_id"] for r in result.run_requests] == ["d1"]


def test_linked_tenant_study_and_drop_folders_are_refused(tmp_path):
    landing = tmp_path / "landing"
    make_drop(landing, "t2", "S1", "d1", {"dm.csv": DM})
    (landing / "evil").symlink_to(landing / "t2")
    (landing / "mal").mkdir()
    (landing / "mal" / "S1").symlink_to(landing / "t2" / "S1")
    (landing / "eve" / "S1").mkdir(parents=True)
    (landing / "eve" / "S1" / "d1").symlink_to(landing / "t2" / "S1" / "d1")
    drops, skipped = scan_ready_drops(landing)
    assert [(d.tenant, d.study, d.drop_id) for d in drops] == [("t2", "S1", "d1")]
    assert len(skipped) == 3 and all("is a symbolic link: tenant, study and drop folders must be real" in m for m in skipped)
    for tenant in ("evil", "mal", "eve"):
        with pytest.raises(UnsafeDropError, match="is a symbolic link"):
            open_drop(landing, tenant, "S1", "d1")
    # a drop folder swapped for a link after it was opened is not read either
    make_drop(landing, "t3", "S1", "d1", {"dm.csv": DM})
    drop = open_drop(landing, "t3", "S1", "d1")
    shutil.rmtree(drop.path)
    drop.path.symlink_to(landing / "t2" / "S1" / "d1")
    with pytest.raises(UnsafeDropError, match="is a symbolic link"):
        land_drop(drop, tmp_path / "raw")
    assert not (tmp_path / "raw" / "t3" / "S1" / "d1").exists() or not any((tmp_path / "raw" / "t3" / "S1" / "d1").glob("v*"))


def test_evil_tenant_linking_to_another_tenants_files_gets_none_of_its_rows(settings):
    landing, raw_dir = settings.landing_dir, settings.raw_dir
    t2 = write_drop(generate_study("t2", "S1", n_subjects=12, n_sites=2, seed=1), landing, "t2", "S1", drop_id="d1")
    t2_raw = land_drop(open_drop(landing, "t2", "S1", "d1"), raw_dir)  # t2's bytes in the raw zone
    evil = make_drop(landing, "evil", "S1", "d1", {"dm.csv": DM}, ready=False)
    (evil / "ae.csv").symlink_to(t2 / "ae.csv")  # absolute link to t2's landing file
    (evil / "vs.csv").symlink_to(t2_raw.file_path("vs.csv"))  # link into t2's raw zone
    (evil / "sv.csv").symlink_to(os.path.join("..", "..", "..", "t2", "S1", "d1", "sv.csv"))  # relative link
    os.link(t2 / "lb.csv", evil / "lb.csv")  # the hard-link trick
    (evil / "_READY").touch()
    t2_hashes = {sha256_file(p) for p in t2.iterdir() if p.is_file()}

    (outcome,) = process_landing_zone(log=lambda _m: None, tenant="evil", assets=ingest_only())
    assert (outcome.status, outcome.drop_id, outcome.state) == ("FAILURE", "d1", "failed")
    text = "\n".join(outcome.summary)
    for name, why in (("ae.csv", "symbolic link"), ("vs.csv", "symbolic link"), ("sv.csv", "symbolic link"),
                      ("lb.csv", "hard link")):
        assert f"{name}: {why}" in text, text
    evil_raw = [p for p in (raw_dir / "evil").rglob("*") if p.is_file()]
    assert sorted(p.name for p in evil_raw) == [MANIFEST, "dm.csv"]
    assert not {sha256_file(p) for p in evil_raw} & t2_hashes
    assert not (settings.lake_dir / "evil" / "S1" / "bronze").exists()  # nothing of the drop reached bronze
    assert not (settings.lake_dir / "evil" / "S1" / "raw_pointer.json").exists()
