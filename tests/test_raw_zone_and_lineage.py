from __future__ import annotations

import json
import os

import pytest

from tests.conftest import make_drop
from trialsynth.cli import main
from trialsynth.ingest.landing import open_drop
from trialsynth.ingest.raw_zone import land_drop
from trialsynth.lineage import LocalLineageStore, verify_chain


def test_raw_zone_is_immutable_and_versioned(tmp_path):
    make_drop(tmp_path / "landing", "t1", "S1", "d1", {"dm.csv": b"a,b\n1,2\n"})
    drop = open_drop(tmp_path / "landing", "t1", "S1", "d1")
    v1 = land_drop(drop, tmp_path / "raw")
    assert v1.created and v1.version == 1
    assert not os.access(v1.file_path("dm.csv"), os.W_OK) or os.geteuid() == 0
    assert oct(v1.file_path("dm.csv").stat().st_mode)[-3:] == "444"
    again = land_drop(drop, tmp_path / "raw")
    assert not again.created and again.version == 1  # same bytes: no new version, no copy
    (drop.path / "dm.csv").write_bytes(b"a,b\n1,3\n")  # re-drop with different bytes
    v2 = land_drop(drop, tmp_path / "raw")
    assert v2.created and v2.version == 2
    assert v1.file_path("dm.csv").read_bytes() == b"a,b\n1,2\n"  # v1 untouched
    manifest = json.loads((v2.path / "_manifest.json").read_text())
    assert manifest["files"]["dm.csv"] == v2.files["dm.csv"] != v1.files["dm.csv"]


def _chain(tmp_path, n=4):
    store = LocalLineageStore(tmp_path)
    for i in range(n):
        store.append("t1", "S1", {"asset_key": f"a{i}", "input_sha256s": {"f": str(i)}, "output_sha256": str(i) * 4,
                                  "code_version": "x", "parameters": {"i": i}, "seed": i})
    return store


def test_lineage_chain_verifies_and_names_first_broken_link(tmp_path):
    store = _chain(tmp_path)
    records = store.read("t1", "S1")
    assert verify_chain(records).ok and records[1]["prev_hash"] == records[0]["hash"]
    records[2]["parameters"] = {"i": 99}  # edit a record
    report = verify_chain(records)
    assert not report.ok and report.broken_index == 2 and "edited" in report.reason
    records = store.read("t1", "S1")
    del records[1]  # remove a record
    report = verify_chain(records)
    assert report.broken_index == 1 and "removed" in report.reason


def test_verify_lineage_cli(settings, capsys):
    store = _chain(settings.lake_dir)
    assert main(["verify-lineage", "--tenant", "t1", "--study", "S1"]) == 0
    assert "intact: 4 records" in capsys.readouterr().out
    path = store.path("t1", "S1")
    lines = path.read_text().splitlines()
    rec = json.loads(lines[3])
    rec["output_sha256"] = "forged"
    lines[3] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    assert main(["verify-lineage", "--tenant", "t1", "--study", "S1"]) == 1
    assert "BROKEN at record 4 of 4 (asset 'a3'" in capsys.readouterr().out
    assert main(["verify-lineage", "--tenant", "../x", "--study", "S1"]) == 2


@pytest.mark.parametrize("n", [1, 3])
def test_chain_survives_reload(tmp_path, n):
    store = _chain(tmp_path, n)
    assert verify_chain(LocalLineageStore(tmp_path).read("t1", "S1")).records == n
    assert store.read("t1", "S1")[0]["prev_hash"] == "0" * 64
