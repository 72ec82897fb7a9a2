"""Lineage manifests as signed OpenLineage RunEvents in a hash chain: format, keys, O(1) appends,
racing writers, RFC 6962 checkpoints (local lake and SeaweedFS)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent
from openlineage.client.serde import Serde

from tests.lineage_support import BACKENDS, fill, keys_of, make_store, verify
from trialsynth.hashing import canonical_json
from trialsynth.lineage import (
    FileSigner,
    KeyRing,
    LocalLineageStore,
    checkpoint_verified,
    verify_chain,
    verify_store,
)
from trialsynth.lineage import manifest as manifest_mod
from trialsynth.lineage.merkle import merkle_root, prefix_roots

# RFC 6962 reference tree (certificate-transparency test data): 8 leaves, the tree head at each size.
CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43", bytes(range(0x50, 0x58)),
             bytes(range(0x60, 0x70))]
CT_ROOTS = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written out recursively as the reference."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def test_merkle_roots_match_rfc6962_reference():
    assert [r.hex() for r in prefix_roots(CT_LEAVES)] == CT_ROOTS
    assert merkle_root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    leaves = [bytes([i]) * (i % 5) for i in range(70)]
    assert [r for r in prefix_roots(leaves)] == [_mth(leaves[:n]) for n in range(1, 71)]


def test_manifest_is_a_signed_openlineage_run_event(tmp_path):
    store = LocalLineageStore(tmp_path / "lake", FileSigner(tmp_path / "k.pem"))
    out = tmp_path / "out.parquet"
    out.write_bytes(b"PAR1")
    rec = store.append("acme", "S-1", {"asset_key": "bronze/dm", "input_sha256s": {"dm.csv": "ab" * 32},
                                        "output_sha256": hashlib.sha256(b"PAR1").hexdigest(), "code_version": "1.0",
                                        "parameters": {"rows": 3, "note": None}, "seed": None,
                                        "run_id": "6f1c1b7e-0a3c-4a8e-9a51-3f0c2d1e4b5a",
                                        "outputs": [manifest_mod.file_dataset(out, hashlib.sha256(b"PAR1").hexdigest())]})
    event = rec["manifest"]
    # exactly what openlineage-python itself serializes for this run, plus the audit facet
    rebuilt = Serde.to_dict(RunEvent(
        eventType="COMPLETE", eventTime=event["eventTime"], producer=event["producer"],
        run=Run(runId=event["run"]["runId"]), job=Job(namespace="trialsynth", name="bronze/dm"),
        inputs=[InputDataset(namespace="trialsynth://acme/S-1", name="dm.csv")],
        outputs=[OutputDataset(namespace="file", name=str(out.resolve()))]))
    assert rebuilt == {**event, "run": {**event["run"], "facets": {}}}
    assert event["eventType"] == "COMPLETE" and event["run"]["runId"] == "6f1c1b7e-0a3c-4a8e-9a51-3f0c2d1e4b5a"
    assert event["outputs"][0]["name"] == str(out.resolve()) and event["inputs"][0]["name"] == "dm.csv"
    facet = event["run"]["facets"]["trialsynth_audit"]
    assert facet["parameters"] == {"rows": 3, "note": None} and facet["seed"] is None  # None kept, not dropped
    assert facet["sequence"] == 0 and facet["prev_hash"] == "0" * 64
    assert manifest_mod.GIT_SHA.match(facet["git_sha"].removesuffix("+dirty")) or facet["git_sha"].startswith("unknown: ")
    # hash and signature cover the event without the two fields themselves
    body = json.loads(json.dumps(event))
    del body["run"]["facets"]["trialsynth_audit"]["hash"], body["run"]["facets"]["trialsynth_audit"]["signature"]
    assert facet["hash"] == hashlib.sha256(canonical_json(body).encode()).hexdigest()
    Ed25519PublicKey.from_public_bytes(store.signer.public_key()).verify(
        base64.b64decode(facet["signature"]), canonical_json(body).encode())
    assert facet["key_id"] == store.signer.key_id
    # one object per manifest, named <seq>-<hash>.json, stored as its canonical JSON; the key is published
    path = tmp_path / "lake" / "lineage" / "acme" / "S-1" / f"{0:012d}-{facet['hash']}.json"
    assert path.read_bytes() == canonical_json(event).encode()
    published = json.loads((tmp_path / "lake" / "lineage" / "keys" / f"{facet['key_id']}.json").read_text())
    assert base64.b64decode(published["public_key"]) == store.signer.public_key()


def test_signing_key_file_is_private_and_stable(tmp_path):
    path = tmp_path / "keys" / "lineage.pem"
    first = FileSigner(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert FileSigner(path).key_id == first.key_id and first.key_id.startswith("ed25519-")
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        FileSigner(path)


def test_missing_git_commit_is_said_in_manifest_and_verification(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_mod, "git_sha", lambda: "unknown: git commit of /x not found (OSError: no git)")
    store = LocalLineageStore(tmp_path / "lake", FileSigner(tmp_path / "k.pem"))
    rec = fill(store, "t1", "S1", 1, tmp_path / "out")[0]
    assert rec["git_sha"].startswith("unknown: git commit")
    report = verify(store)
    assert report.ok and "code version has no git commit" in report.describe()


def _counting(backend):
    calls = {"get": 0, "put_new": 0, "scan": 0}
    for name in calls:
        original = getattr(backend, name)

        def wrapped(*a, _name=name, _original=original, **kw):
            calls[_name] += 1
            return _original(*a, **kw)
        setattr(backend, name, wrapped)
    return calls


def test_append_is_constant_work_whatever_the_chain_length(tmp_path):
    store = LocalLineageStore(tmp_path / "lake", FileSigner(tmp_path / "k.pem"))
    cost = {}
    for length in (2, 40):
        fill(store, f"t{length}", "S1", length, tmp_path / "out")
        calls = _counting(store.backend)
        fill(store, f"t{length}", "S1", 1, tmp_path / "out", start=length)
        cost[length] = dict(calls)
        store = LocalLineageStore(tmp_path / "lake", store.signer)
    assert cost[2] == cost[40] and cost[2]["scan"] == 0  # no re-read of the log


def test_verification_reads_each_manifest_once_and_no_claim(tmp_path):
    """Verification costs one listing per partition and one read per manifest (the claims' listing
    entries suffice), so it is linear in the chain length."""
    store = LocalLineageStore(tmp_path / "lake", FileSigner(tmp_path / "k.pem"))
    cost = {}
    for length in (3, 12):
        fill(store, f"t{length}", "S1", length, tmp_path / "out")
        read: list[str] = []
        original = store.backend.get

        def get(key, version_id=None, _read=read, _get=original):
            _read.append(key)
            return _get(key, version_id)
        store.backend.get = get
        calls = _counting(store.backend)
        assert verify_store(store, KeyRing({store.signer.key_id}), partitions=[(f"t{length}", "S1")]).ok
        assert not any("/seq/" in k for k in read) and len(read) == len(set(read))
        cost[length] = (len(read), calls["scan"])
        store = LocalLineageStore(tmp_path / "lake", store.signer)
    assert cost[12][0] - cost[3][0] == 9 and cost[3][1] == cost[12][1]


@BACKENDS
def test_two_writers_racing_never_fork_the_chain(kind, tmp_path, request):
    """A writer that loses the race for a sequence re-chains onto the winner's manifest."""
    store = make_store(kind, tmp_path, request)
    second = make_store(kind, tmp_path, request, signer=store.signer)
    if kind == "s3":  # the same bucket through a second client
        second.backend.bucket = store.backend.bucket
    fill(store, "acme", "S1", 1, tmp_path / "out")
    # Deterministic race: writer B appends between writer A's manifest and A's claim of sequence 1.
    original = store.backend.put_new
    state = {"raced": False}

    def put_new(key, data):
        if "/seq/" in key and not state["raced"]:
            state["raced"] = True
            fill(second, "acme", "S1", 1, tmp_path / "out", start=100)
        return original(key, data)
    store.backend.put_new = put_new
    a = fill(store, "acme", "S1", 1, tmp_path / "out", start=1)[0]
    store.backend.put_new = original
    chain = store.read("acme", "S1")
    assert [r["asset_key"] for r in chain] == ["asset0", "asset100", "asset1"]
    assert a["sequence"] == 2 and a["prev_hash"] == chain[1]["hash"]
    # Free-running: two writers, eight appends each, at the same time.
    threads = [threading.Thread(target=fill, args=(w, "acme", "S2", 8, tmp_path / f"race{i}", 10 * i))
               for i, w in enumerate((store, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chain = store.read("acme", "S2")
    assert len(chain) == 16 and sorted(r["asset_key"] for r in chain) == sorted(f"asset{i}" for i in (*range(8), *range(10, 18)))
    report = verify(store)
    assert report.ok, report.describe()
    assert "orphan manifest" in report.describe()  # A's first try at sequence 1 of S1 stays, unclaimed


@BACKENDS
def test_checkpoints_are_signed_merkle_roots_over_the_chain(kind, tmp_path, request):
    store = make_store(kind, tmp_path, request)
    records = fill(store, "acme", "S1", 5, tmp_path / "out")
    report = verify(store)
    (doc,) = checkpoint_verified(store, report)
    assert doc["tree_size"] == 5 and doc["head"] == {"sequence": 4, "hash": records[-1]["hash"]}
    assert doc["root_hash"] == _mth([bytes.fromhex(r["hash"]) for r in records]).hex()
    assert checkpoint_verified(store, verify(store)) == []  # nothing new: no second checkpoint
    fill(store, "acme", "S1", 2, tmp_path / "out", start=5)
    report = verify(store)
    assert report.ok and report.partitions[0].checkpoints == 1
    assert [d["tree_size"] for d in checkpoint_verified(store, report)] == [7]
    assert any(k.endswith("checkpoints/000000000007.json") for k in keys_of(store, "acme", "S1"))


def test_verify_chain_on_records_and_keyring(tmp_path):
    store = LocalLineageStore(tmp_path / "lake", FileSigner(tmp_path / "k.pem"))
    records = fill(store, "t1", "S1", 3, tmp_path / "out")
    assert verify_chain(store.read("t1", "S1"), KeyRing({store.signer.key_id}, {store.signer.key_id: store.signer.public_key()})).ok
    other = KeyRing({"ed25519-0000000000000000"})
    report = verify_chain(records, other)
    assert not report.ok and report.broken_index == 0 and "not a trusted key" in report.reason
