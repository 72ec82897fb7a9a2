"""The lake store (trialsynth/storage): the same behaviour on a local folder and on S3 (SeaweedFS started
by the session fixture), local working copies published back only on success, keys held to their tenant."""

from __future__ import annotations

import hashlib
import io
import os
import socket
from datetime import UTC, datetime

import polars as pl
import pytest

from orchestration.resources import LakeResource
from trialsynth.settings import Settings
from trialsynth.storage import (
    IncompletePublishError,
    LakeStore,
    LocalLakeStore,
    LockedObjectError,
    S3LakeStore,
    open_lake_store,
    tenant_key,
)
from trialsynth.storage.lake import PUBLISHING
from trialsynth.tenancy import TenantPathError

BUCKET = "lake-store-test"
RAW_BUCKET = "lake-store-test-raw"  # created with Object Lock


@pytest.fixture
def s3_store(request, tmp_path, monkeypatch) -> S3LakeStore:
    s3 = request.getfixturevalue("seaweedfs")
    s3.make_bucket(BUCKET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    return S3LakeStore(BUCKET, f"{tmp_path.name}/lake", endpoint_url=s3.endpoint)  # a fresh prefix per test


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> LakeStore:
    return LocalLakeStore(tmp_path / "lake") if request.param == "local" else request.getfixturevalue("s3_store")


def test_objects_round_trip(store: LakeStore) -> None:
    frame = pl.DataFrame({"USUBJID": ["S-1", "S-2"], "AGE": [41, 57]})
    sha = store.write_parquet("acme/s1/bronze/dm.parquet", frame)
    assert store.read_parquet("acme/s1/bronze/dm.parquet").equals(frame)
    assert store.read_pandas("acme/s1/bronze/dm.parquet")["AGE"].tolist() == [41, 57]
    assert sha == hashlib.sha256(store.read_bytes("acme/s1/bronze/dm.parquet")).hexdigest()
    store.write_json("acme/s1/raw_pointer.json", {"drop_id": "d1", "version": 2})
    store.write_bytes("beta/s1/bronze/dm.parquet", b"x")
    assert store.read_json("acme/s1/raw_pointer.json") == {"drop_id": "d1", "version": 2}
    assert store.list("acme") == ["acme/s1/bronze/dm.parquet", "acme/s1/raw_pointer.json"]
    assert store.list(pattern="*/*/bronze/*.parquet") == ["acme/s1/bronze/dm.parquet", "beta/s1/bronze/dm.parquet"]
    assert store.list("nobody") == [] and store.children() == ["acme", "beta"]
    store.write_bytes("acme/s1/raw_pointer.json", b"{}")  # replaced whole
    assert store.read_json("acme/s1/raw_pointer.json") == {}
    store.delete("acme/s1/raw_pointer.json")
    store.delete("acme/s1/raw_pointer.json")  # absent: no error
    assert not store.exists("acme/s1/raw_pointer.json") and store.exists("acme/s1/bronze/dm.parquet")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("acme/s1/raw_pointer.json")


def test_local_working_copy_is_the_folder_itself(tmp_path) -> None:
    """On local disk there is nothing to copy: writers work in the lake folder (atomically per file, the
    ingest core swapping whole bronze folders), as before the store existed."""
    store = LocalLakeStore(tmp_path / "lake")
    with store.working_copy("acme/s1/bronze") as root:
        (root / "acme/s1/bronze").mkdir(parents=True)
        (root / "acme/s1/bronze/dm.parquet").write_bytes(b"dm")
    assert root == tmp_path / "lake" and store.read_bytes("acme/s1/bronze/dm.parquet") == b"dm"


def test_working_copy_publishes_changes_only_on_success(s3_store: S3LakeStore) -> None:
    store = s3_store
    store.write_bytes("acme/s1/bronze/dm.parquet", b"old dm")
    store.write_bytes("acme/s1/bronze/supp/suppdm.parquet", b"old supp")
    store.write_bytes("acme/s1/study_data/matrix.parquet", b"not in the copy")

    with pytest.raises(RuntimeError), store.working_copy("acme/s1/bronze") as root:
        (root / "acme/s1/bronze/dm.parquet").write_bytes(b"half-written")
        raise RuntimeError("the ingest failed")
    assert store.read_bytes("acme/s1/bronze/dm.parquet") == b"old dm"  # nothing of a failed block is visible

    with store.working_copy("acme/s1/bronze") as root:
        bronze = root / "acme/s1/bronze"
        assert sorted(p.relative_to(bronze).as_posix() for p in bronze.rglob("*") if p.is_file()) == \
            ["dm.parquet", "supp/suppdm.parquet"]
        (bronze / "dm.parquet").write_bytes(b"new dm")
        (bronze / "ae.parquet").write_bytes(b"new ae")
        (bronze / "supp/suppdm.parquet").unlink()  # the new drop has no supplemental file
    assert store.list("acme/s1/bronze") == ["acme/s1/bronze/ae.parquet", "acme/s1/bronze/dm.parquet"]
    assert store.read_bytes("acme/s1/bronze/dm.parquet") == b"new dm"
    assert store.read_bytes("acme/s1/study_data/matrix.parquet") == b"not in the copy"


def test_working_copy_fetches_only_what_matches(s3_store: S3LakeStore) -> None:
    """The raw zone's dedupe reads the earlier versions' manifests, not their (large) files; files that
    were not fetched are not removed by the publish."""
    store = s3_store
    store.write_bytes("acme/s1/d1/v1/_manifest.json", b"{}")
    store.write_bytes("acme/s1/d1/v1/dm.xpt", b"big")
    with store.working_copy("acme/s1/d1", fetch="acme/s1/d1/*/_manifest.json") as root:
        assert not (root / "acme/s1/d1/v1/dm.xpt").exists()
        (root / "acme/s1/d1/v2").mkdir()
        (root / "acme/s1/d1/v2/dm.xpt").write_bytes(b"new version")
    assert store.list("acme/s1/d1") == ["acme/s1/d1/v1/_manifest.json", "acme/s1/d1/v1/dm.xpt", "acme/s1/d1/v2/dm.xpt"]


@pytest.mark.parametrize("key", ["beta/s1/x", "acme/../beta/s1/x", "/acme/s1/x", "acme//x", "acme/./x", "acme\\..\\beta",
                                 "acme/s1/../../beta/s1/x", ""])
def test_keys_outside_the_tenant_are_refused(key: str) -> None:
    with pytest.raises(TenantPathError):
        tenant_key("acme", key)


def test_tenant_guard_on_the_resource(tmp_path) -> None:
    lake = LakeResource(data_dir=str(tmp_path / "data"))
    with pytest.raises(TenantPathError):
        lake.read_json("acme|s1", "../../beta/s1/raw_pointer.json")
    with pytest.raises(TenantPathError):
        lake.working_copy("acme|s1", "../../beta/s1/bronze").__enter__()
    with pytest.raises(TenantPathError):  # a symlink planted in acme's folder that points into beta's
        (tmp_path / "data/lake/beta/s1").mkdir(parents=True)
        (tmp_path / "data/lake/acme").mkdir(parents=True)
        os.symlink(tmp_path / "data/lake/beta/s1", tmp_path / "data/lake/acme/s1")
        lake.write_json("acme|s1", "synthesis/model.json", {})
    assert not (tmp_path / "data/lake/beta/s1/synthesis").exists()


def test_settings_choose_the_store(tmp_path, monkeypatch) -> None:
    local = Settings(root=tmp_path)
    assert isinstance(open_lake_store(local), LocalLakeStore) and open_lake_store(local).location == str(tmp_path / "data/lake")
    assert open_lake_store(local, "raw").uri("acme/s1/d1/v1/dm.xpt") == str(tmp_path / "data/raw/acme/s1/d1/v1/dm.xpt")

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    s3 = Settings(root=tmp_path, warehouse={"target": "clickhouse"}, lake={
        "store": "s3", "s3_bucket": "b", "s3_prefix": "prod/", "s3_endpoint_url": "http://127.0.0.1:9"})
    assert open_lake_store(s3).uri("acme/s1/bronze/dm.parquet") == "s3://b/prod/lake/acme/s1/bronze/dm.parquet"
    assert open_lake_store(s3, "raw").uri("acme/s1/d1") == "s3://b/prod/raw/acme/s1/d1"
    assert open_lake_store(s3).location == "http://127.0.0.1:9/b/prod/lake"  # what dbt-clickhouse's s3() reads
    with pytest.raises(ValueError, match="zone"):
        open_lake_store(s3, "landing")
    with pytest.raises(ValueError, match="warehouse.target clickhouse"):
        Settings(root=tmp_path, lake={"store": "s3"})
    with pytest.raises(ValueError, match="s3_prefix"):
        Settings(root=tmp_path, warehouse={"target": "clickhouse"}, lake={"store": "s3", "s3_prefix": "a/../b"})


def test_parquet_is_written_as_the_ingest_writes_it(tmp_path) -> None:
    """The same bytes as the ingest core's writer, so lineage hashes do not depend on the store."""
    from trialsynth.ingest.bronze import write_parquet_atomic

    frame = pl.DataFrame({"x": [1.5, None], "y": ["a", "b"]})
    sha = write_parquet_atomic(frame, tmp_path / "a.parquet")
    assert LocalLakeStore(tmp_path).write_parquet("acme/b.parquet", frame) == sha
    assert pl.read_parquet(io.BytesIO((tmp_path / "acme/b.parquet").read_bytes())).equals(frame)


def test_an_unreachable_s3_lake_names_its_endpoint(monkeypatch) -> None:
    """A run that loses the lake fails saying which service stopped answering (trialsynth.outage reads it)."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store = S3LakeStore("b", "lake", endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectionError, match=rf"could not connect to the S3 lake at 127\.0\.0\.1:{port} \(bucket b\)"):
        store.read_bytes("acme/s1/raw_pointer.json")


def _fail_after(monkeypatch, store_class: type, puts: int) -> None:
    """The store's publish PUTs fail (as when SeaweedFS is killed) after ``puts`` objects."""
    done = []
    original = store_class._put

    def put(self, key: str, data: bytes, replace: bool) -> None:
        if len(done) >= puts:
            raise ConnectionError("could not connect to the S3 lake at 127.0.0.1:1 (bucket b): killed")
        done.append(key)
        original(self, key, data, replace)

    monkeypatch.setattr(store_class, "_put", put)


def test_an_interrupted_publish_is_refused_to_readers_and_a_rerun_republishes_whole(s3_store, monkeypatch) -> None:
    store = s3_store
    old = {"dm": b"dm of d1", "ae": b"ae of d1", "lb": b"lb of d1", "_domains": b"index of d1"}
    new = {"dm": b"dm of d2", "ae": b"ae of d2", "vs": b"vs of d2", "_domains": b"index of d2"}
    for name, data in old.items():
        store.write_bytes(f"acme/s1/bronze/{name}.parquet", data)
    store.write_json("acme/s1/raw_pointer.json", {"drop_id": "d2"})

    def publish_d2() -> None:
        with store.working_copy("acme/s1/bronze") as root:
            bronze = root / "acme/s1/bronze"
            for path in bronze.iterdir():
                path.unlink()
            for name, data in new.items():
                (bronze / f"{name}.parquet").write_bytes(data)

    with monkeypatch.context() as m:
        _fail_after(m, S3LakeStore, 3)
        with pytest.raises(ConnectionError):
            publish_d2()
    # the bucket now mixes d1 and d2 ...
    assert store.exists("acme/s1/bronze/lb.parquet") and store.exists("acme/s1/bronze/vs.parquet")
    # ... and no reader gets to see it: every object below bronze/ is refused, naming the partition
    for name in ("dm", "lb", "vs", "_domains"):
        with pytest.raises(IncompletePublishError, match=r"partition acme\|s1: the publish of bronze/ .* rerun"):
            store.read_bytes(f"acme/s1/bronze/{name}.parquet")
    with pytest.raises(IncompletePublishError):
        store.read_parquet("acme/s1/bronze/dm.parquet")
    assert store.read_json("acme/s1/raw_pointer.json") == {"drop_id": "d2"}  # outside the publish: readable

    publish_d2()  # the rerun
    assert store.list("acme/s1/bronze") == sorted(f"acme/s1/bronze/{n}.parquet" for n in new)
    assert {n: store.read_bytes(f"acme/s1/bronze/{n}.parquet") for n in new} == new


def test_a_publish_writes_index_files_last(s3_store, monkeypatch) -> None:
    """A ``_*`` file (bronze's _domains.parquet, a raw version's _manifest.json) says the others are there."""
    written: list[str] = []
    original = S3LakeStore._put
    monkeypatch.setattr(S3LakeStore, "_put", lambda self, key, data, replace: (written.append(key),
                                                                                original(self, key, data, replace)))
    with s3_store.working_copy("acme/s1/d1") as root:
        (root / "acme/s1/d1/v1").mkdir(parents=True)
        for name in ("_manifest.json", "ae.csv", "zz.csv"):
            (root / "acme/s1/d1/v1" / name).write_bytes(name.encode())
    assert written == ["acme/s1/d1/v1/ae.csv", "acme/s1/d1/v1/zz.csv", "acme/s1/d1/v1/_manifest.json"]
    assert not s3_store.exists(f"acme/s1/d1/{PUBLISHING}")


@pytest.fixture
def raw_store(seaweedfs, tmp_path, monkeypatch) -> S3LakeStore:
    seaweedfs.make_bucket(RAW_BUCKET, object_lock=True)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    return S3LakeStore(RAW_BUCKET, f"{tmp_path.name}/raw", endpoint_url=seaweedfs.endpoint, retention_days=30)


def test_the_raw_zone_is_written_under_object_lock_and_never_replaced(raw_store, seaweedfs) -> None:
    from botocore.exceptions import ClientError

    store, client = raw_store, seaweedfs.client()
    key = "acme/s1/d1/v1/dm.csv"
    store.write_bytes(key, b"sponsor bytes")
    head = client.head_object(Bucket=RAW_BUCKET, Key=store.object_key(key))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert (head["ObjectLockRetainUntilDate"] - datetime.now(UTC)).days in (29, 30)
    with pytest.raises(LockedObjectError, match="under Object Lock"):
        store.write_bytes(key, b"other bytes")
    with pytest.raises(LockedObjectError, match="never removed"):
        store.delete(key)
    assert store.read_bytes(key) == b"sponsor bytes"
    # past the store, the bucket itself refuses to delete the locked version (a plain DELETE would only hide
    # it behind a delete marker: the version and its retention stay)
    with pytest.raises(ClientError, match="AccessDenied|ObjectLocked|Forbidden"):
        client.delete_object(Bucket=RAW_BUCKET, Key=store.object_key(key), VersionId=head["VersionId"])
    assert client.get_object(Bucket=RAW_BUCKET, Key=store.object_key(key), VersionId=head["VersionId"])["Body"].read() \
        == b"sponsor bytes"


def test_a_locked_bucket_is_required_for_the_raw_zone(s3_store, seaweedfs) -> None:
    """A raw-zone bucket created without Object Lock does not keep the retention: the write fails, saying so."""
    from trialsynth.lineage.backends import WormError

    locked = S3LakeStore(BUCKET, s3_store.key_root, endpoint_url=seaweedfs.endpoint, retention_days=30)
    with pytest.raises(WormError, match="bucket created with Object Lock enabled"):
        locked.write_bytes("acme/s1/d1/v1/dm.csv", b"sponsor bytes")


def test_an_interrupted_raw_publish_is_landed_again_whole(raw_store, monkeypatch) -> None:
    """The objects an interrupted publish left (no manifest yet) are written again by the rerun, as newer
    locked versions; nothing else of the raw zone can be replaced."""
    store = raw_store

    def land_v1() -> None:
        with store.working_copy("acme/s1/d1", fetch="acme/s1/d1/*/_manifest.json") as root:
            (root / "acme/s1/d1/v1").mkdir(parents=True)
            for name in ("_manifest.json", "ae.csv", "dm.csv"):
                (root / "acme/s1/d1/v1" / name).write_bytes(name.encode())

    with monkeypatch.context() as m:
        _fail_after(m, S3LakeStore, 1)
        with pytest.raises(ConnectionError):
            land_v1()
    assert store.list("acme/s1/d1", "*.csv") == ["acme/s1/d1/v1/ae.csv"]
    assert not store.exists("acme/s1/d1/v1/_manifest.json")  # the version is not there for readers
    with pytest.raises(IncompletePublishError, match=r"partition acme\|s1"):
        store.read_bytes("acme/s1/d1/v1/ae.csv")
    land_v1()
    assert store.list("acme/s1/d1", "*/v1/*") == [f"acme/s1/d1/v1/{n}" for n in ("_manifest.json", "ae.csv", "dm.csv")]
    assert store.read_bytes("acme/s1/d1/v1/dm.csv") == b"dm.csv"
    # the write-once zone keeps the manifest, completed, naming what the rerun wrote again: not a tampering
    done = store.read_json(f"acme/s1/d1/{PUBLISHING}")
    assert "completed_at" in done and done["repaired"] == ["acme/s1/d1/v1/ae.csv"]
    assert store.lock_problems("acme") == []
    with pytest.raises(LockedObjectError):  # the repair is over: write-once again
        store.write_bytes("acme/s1/d1/v1/ae.csv", b"x")


def test_raw_objects_deleted_or_written_over_past_the_store_are_refused_or_named(raw_store, seaweedfs) -> None:
    """Another client with the bucket's keys: a delete is refused by the bucket policy the stack sets; one made
    before it (a delete marker) and a plain PUT over a locked object (a newer version) are named."""
    from botocore.exceptions import ClientError

    from trialsynth.lineage.backends import protect_bucket

    store, client = raw_store, seaweedfs.client()
    for name in ("dm.csv", "ae.csv", "lb.csv"):
        store.write_bytes(f"acme/s1/d1/v1/{name}", name.encode())
    assert store.lock_problems("acme") == []
    client.delete_object(Bucket=RAW_BUCKET, Key=store.object_key("acme/s1/d1/v1/lb.csv"))  # no policy yet
    protect_bucket(client, RAW_BUCKET, f"{store.key_root}/")
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=RAW_BUCKET, Key=store.object_key("acme/s1/d1/v1/dm.csv"))
    client.put_object(Bucket=RAW_BUCKET, Key=store.object_key("acme/s1/d1/v1/ae.csv"), Body=b"forged")
    problems = store.lock_problems("acme")
    where = f"s3://{RAW_BUCKET}/{store.object_key('acme/s1/d1/v1')}"
    assert problems == [f"{where}/ae.csv: written over (1 newer version(s); the first is kept, locked)",
                        f"{where}/lb.csv: deleted (a delete marker hides its locked version)"], problems
