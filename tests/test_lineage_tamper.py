"""Every tamper of the audit-lineage issue, on the local lake and on SeaweedFS (S3 Object Lock):
each is refused by the bucket or named by verification at the first broken link."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from tests.lineage_support import BACKENDS, fill, make_store, raw_delete, raw_read, raw_write, verify
from trialsynth.lineage import FileSigner, LocalLineageStore, ObjectExistsError, checkpoint_verified
from trialsynth.lineage.backends import protect_bucket
from trialsynth.lineage.store import claim_key, head_key, manifest_key, partition_prefix

T, S = "acme", "S1"


def _chain(kind, tmp_path, request, n=5, checkpoint=True):
    store = make_store(kind, tmp_path, request)
    records = fill(store, T, S, n, tmp_path / "out")
    if checkpoint:
        checkpoint_verified(store, verify(store))
    return store, records


def _key(record) -> str:
    return manifest_key(T, S, record["sequence"], record["hash"])


def _first_failure(store, *trusted):
    report = verify(store, *trusted)
    assert not report.ok, report.describe()
    assert report.describe().splitlines()[1] == f"first broken link: {report.first_failure.describe()}"
    return report.first_failure


def _error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_s3_refuses_to_replace_or_delete_a_locked_manifest(tmp_path, request):
    store, records = _chain("s3", tmp_path, request)
    client, bucket, key = store.backend.client, store.backend.bucket, _key(records[2])
    assert "has no bucket policy refusing deletes under lineage/" in verify(store).describe()
    protect_bucket(client, bucket, "lineage/")
    assert verify(store).ok and "bucket policy" not in verify(store).describe()
    with pytest.raises(ObjectExistsError):  # the store's own write path: If-None-Match
        store.backend.put_new(key, b"forged")
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=bucket, Key=key, Body=b"forged", IfNoneMatch="*", ChecksumAlgorithm="SHA256")
    assert _error_code(exc) == "PreconditionFailed"
    original = store.backend.scan(key)[key].original
    with pytest.raises(ClientError) as exc:  # the locked version itself
        client.delete_object(Bucket=bucket, Key=key, VersionId=original)
    assert _error_code(exc) == "AccessDenied"
    # the governance bypass header does not bypass COMPLIANCE mode, for deletes nor for shorter retention
    with pytest.raises(ClientError) as exc:
        client.delete_object(Bucket=bucket, Key=key, VersionId=original, BypassGovernanceRetention=True)
    assert _error_code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        client.put_object_retention(Bucket=bucket, Key=key, VersionId=original, BypassGovernanceRetention=True,
                                    Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(seconds=5)})
    assert _error_code(exc) == "AccessDenied"
    # a DELETE without version id (a delete marker over the locked version): refused by the bucket policy
    for target in (key, claim_key(T, S, 3)):
        with pytest.raises(ClientError) as exc:
            client.delete_object(Bucket=bucket, Key=target)
        assert _error_code(exc) == "AccessDenied"
    assert not any(v.delete_markers for v in store.backend.scan(partition_prefix(T, S)).values())
    # A plain PUT over it (no If-None-Match) is what SeaweedFS cannot refuse without refusing the store's
    # own conditional writes (see protect_bucket): it adds a version on top of the locked original, which
    # the chain still reads and verification names, key and all.
    raw_write(store, key, b"forged")
    assert raw_read(store, key) == b"forged" and store.backend.get(key, original).data != b"forged"
    assert [r["hash"] for r in store.read(T, S)] == [r["hash"] for r in records]
    first = _first_failure(store)
    assert first.sequence == 2 and first.problem.startswith(f"{key} was overwritten (2 versions)")


def test_s3_delete_marker_over_a_locked_object_is_named(tmp_path, request):
    """Without the bucket policy S3 versioning accepts a DELETE as a delete marker on top of the
    locked version: verification names it (the claim, here) and still reads the original."""
    store, records = _chain("s3", tmp_path, request)
    raw_delete(store, claim_key(T, S, 3))
    assert [r["hash"] for r in store.read(T, S)] == [r["hash"] for r in records]
    first = _first_failure(store)
    assert first.sequence == 3 and first.problem == (f"{claim_key(T, S, 3)} was deleted (delete marker); "
                                                      "the original locked version is the one verified")


def test_one_byte_changed_in_a_local_manifest(tmp_path, request):
    store, records = _chain("local", tmp_path, request)
    path = store.backend.path(_key(records[2]))
    data = path.read_bytes()
    raw_write(store, _key(records[2]), data.replace(b'"i":2', b'"i":3'))
    first = _first_failure(store)
    assert (first.sequence, first.asset_key) == (2, "asset2") and "the manifest was edited" in first.problem
    raw_write(store, _key(records[2]), b"[" + data[1:])  # a byte that breaks the JSON
    first = _first_failure(store)
    assert first.sequence == 2 and "not a readable RunEvent" in first.problem
    raw_write(store, _key(records[2]), data + b" ")  # same content, not the bytes that were written
    assert "not the manifest's canonical JSON" in _first_failure(store).problem


@BACKENDS
def test_manifest_removed_from_the_middle(kind, tmp_path, request):
    store, records = _chain(kind, tmp_path, request)
    raw_delete(store, _key(records[2]))
    raw_delete(store, claim_key(T, S, 2))
    first = _first_failure(store)
    assert first.sequence == 2
    expected = "deleted (delete marker)" if kind == "s3" else "no manifest at this sequence"
    assert expected in first.problem


@BACKENDS
def test_tail_removed(kind, tmp_path, request):
    store, records = _chain(kind, tmp_path, request)
    for r in records[3:]:
        raw_delete(store, _key(r))
        raw_delete(store, claim_key(T, S, r["sequence"]))
    if kind == "local":  # the head pointer, rolled back too, does not hide it: the checkpoint does not move
        raw_write(store, head_key(T, S), b'{"sequence": 2, "hash": "%s"}' % records[2]["hash"].encode())
        first = _first_failure(store)
        assert first.sequence == 3 and "covers 5 manifests but the chain has 3: the tail was removed" in first.problem
    else:
        first = _first_failure(store)
        assert first.sequence == 3 and "deleted (delete marker)" in first.problem


def _rebuild(store, signer, tmp_path, tamper_params: bool) -> None:
    """Replace the whole chain acme/S1 by one built from scratch (re-hashed, re-linked, signed by
    ``signer``), the way someone with write access to the store would."""
    scratch = LocalLineageStore(tmp_path / f"scratch-{signer.key_id}", signer)
    fill(scratch, T, S, 5, tmp_path / ("forged" if tamper_params else "out"))
    prefix = partition_prefix(T, S)
    for key in store.backend.scan(prefix):
        if "/checkpoints/" not in key:
            raw_delete(store, key)
    for key in list(scratch.backend.scan(prefix)) + list(scratch.backend.scan("lineage/keys/")):
        raw_write(store, key, raw_read(scratch, key))


@BACKENDS
def test_whole_chain_rewritten_and_rehashed(kind, tmp_path, request):
    store, records = _chain(kind, tmp_path, request)
    # Without the key: new content, hashes and links recomputed, but the old signatures cannot follow.
    forger = FileSigner(tmp_path / "forger.pem")
    _rebuild(store, forger, tmp_path, tamper_params=True)
    report = verify(store)
    first = report.partitions[0].first_failure
    assert first.sequence == 0
    if kind == "local":
        assert f"signed with key {forger.key_id}, which is not a trusted key" in first.problem
    else:  # the locked originals are still there and what is verified; the rewrite shows as overwrites
        assert "was overwritten" in first.problem
        assert report.first_failure.partition == "published keys"  # the forger's key, published unlocked
        assert "has no COMPLIANCE retention" in report.first_failure.problem
    # With the genuine key (an insider rebuilding the chain from scratch): the signed checkpoint catches it.
    _rebuild(store, store.signer, tmp_path, tamper_params=True)
    failures = verify(store).partitions[0].failures
    if kind == "local":
        (only,) = failures
        assert only.sequence == 4 and "do not match the checkpoint" in only.problem and "rebuilt" in only.problem
    else:
        assert failures and all("overwritten" in f.problem or "deleted" in f.problem for f in failures)


@BACKENDS
def test_chain_signed_with_another_key(kind, tmp_path, request):
    store, _records = _chain(kind, tmp_path, request, n=2)
    other = FileSigner(tmp_path / "other.pem")
    forged = make_store(kind, tmp_path, request, signer=other)
    if kind == "s3":
        forged.backend.bucket = store.backend.bucket
    else:
        forged = LocalLineageStore(store.lake_dir, other)
    fill(forged, T, "S2", 3, tmp_path / "out")  # a whole chain, consistent, its key published beside it
    first = _first_failure(store)
    assert first.partition == f"{T}|S2" and first.sequence == 0
    assert f"signed with key {other.key_id}, which is not a trusted key" in first.problem
    assert verify(store, other.key_id).ok  # trusting that key (lineage.trusted_key_ids) accepts it


@BACKENDS
def test_output_changed_or_removed_after_its_manifest(kind, tmp_path, request):
    store, records = _chain(kind, tmp_path, request)
    out = records[3]["outputs"][0]["name"]
    with open(out, "ab") as fh:
        fh.write(b"!")
    first = _first_failure(store)
    assert (first.sequence, first.asset_key) == (3, "asset3") and "changed after its manifest" in first.problem
    import os

    os.unlink(out)
    assert "missing from the lake now" in _first_failure(store).problem


@BACKENDS
def test_manifest_copied_from_another_tenants_chain(kind, tmp_path, request):
    store, records = _chain(kind, tmp_path, request, n=3, checkpoint=False)
    theirs = fill(store, "beta", S, 4, tmp_path / "out")
    # appended as acme/S1's next sequence through the store's own protocol (as a writer with access could)
    stolen = theirs[3]
    store.backend.put_new(manifest_key(T, S, 3, stolen["hash"]), raw_read(store, manifest_key("beta", S, 3, stolen["hash"])))
    store.backend.put_new(claim_key(T, S, 3), raw_read(store, claim_key("beta", S, 3)))
    first = _first_failure(store)
    assert first.partition == f"{T}|{S}" and first.sequence == 3
    assert "belongs to beta/S1's chain, not acme/S1's (copied from another partition)" in first.problem
    if kind == "local":  # or in place of one of ours
        raw_delete(store, claim_key(T, S, 3))
        raw_write(store, claim_key(T, S, 1), raw_read(store, claim_key("beta", S, 1)))
        raw_write(store, manifest_key(T, S, 1, theirs[1]["hash"]), raw_read(store, manifest_key("beta", S, 1, theirs[1]["hash"])))
        first = _first_failure(store)
        assert first.sequence == 1 and "belongs to beta/S1's chain" in first.problem


def test_s3_retention_missing_or_expired_is_named(tmp_path, request):
    store = make_store("s3", tmp_path, request, retention_days=2 / 86400)  # two seconds
    fill(store, T, S, 1, tmp_path / "out")
    store.backend.put_new = lambda key, data: raw_write(store, key, data)  # a writer that skips Object Lock
    fill(store, T, S, 1, tmp_path / "out", start=1)
    failures = verify(store).partitions[0].failures
    assert any(f.sequence == 1 and "has no COMPLIANCE retention" in f.problem for f in failures)
    assert not any(f.sequence == 0 for f in failures)
    time.sleep(2.5)
    report = verify(store)
    assert report.first_failure.partition == "published keys" and "retention expired" in report.first_failure.problem
    first = report.partitions[0].first_failure
    assert first.sequence == 0 and "retention expired" in first.problem
