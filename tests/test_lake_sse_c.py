"""The S3 lake zone under SSE-C with each tenant's own key (``lake.s3_sse_c``, issue 12), on SeaweedFS as
the stack starts it: every PUT and GET of a tenant's object carries that tenant's key, so the bucket
holds no lake object that opens without it or with another tenant's; the key is created once even by
concurrent first writers; destroying the tenant's KEK (crypto-shredding) leaves its Parquet unreadable."""

from __future__ import annotations

import threading
import uuid

import pytest
from botocore.exceptions import ClientError

from trialsynth.security import KeyDestroyedError, KeyService
from trialsynth.security.envelope import MAGIC
from trialsynth.security.sse import sse_c_key_location
from trialsynth.settings import Settings
from trialsynth.storage import S3LakeStore, open_lake_store

ROWS = b"PAR1 subject rows of acme PAR1"


@pytest.fixture
def settings(seaweedfs, tmp_path, monkeypatch) -> Settings:
    bucket = f"sse-c-{uuid.uuid4().hex[:10]}"
    seaweedfs.make_bucket(bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    return Settings(data_dir=tmp_path / "data", warehouse={"target": "clickhouse"},
                    lake={"store": "s3", "s3_bucket": bucket, "s3_endpoint_url": seaweedfs.endpoint})


def _get(store: S3LakeStore, key: str, **args) -> bytes:
    return store.client().get_object(Bucket=store.bucket, Key=store.object_key(key), **args)["Body"].read()


def test_every_lake_object_needs_its_tenants_key(settings) -> None:
    store = open_lake_store(settings)
    assert isinstance(store, S3LakeStore) and store.sse_c is not None  # on by default in an S3 deployment
    store.write_bytes("acme/S1/bronze/dm.parquet", ROWS)
    store.write_bytes("beta/S9/bronze/dm.parquet", b"beta rows")
    assert store.read_bytes("acme/S1/bronze/dm.parquet") == ROWS
    with pytest.raises(ClientError, match="must provide the customer key"):
        _get(store, "acme/S1/bronze/dm.parquet")  # no key
    beta_key = store.sse_c_key("beta/S9/bronze/dm.parquet")
    assert beta_key != store.sse_c_key("acme/S1/bronze/dm.parquet")
    with pytest.raises(ClientError):  # beta's key does not open acme's object
        _get(store, "acme/S1/bronze/dm.parquet", SSECustomerAlgorithm="AES256", SSECustomerKey=beta_key)
    # the wrapped key itself is an envelope under the KEK, readable without SSE-C (else nothing opens it)
    assert _get(store, sse_c_key_location("acme")).startswith(MAGIC)
    # listing, existence, deletion and publishes work on SSE-C objects (S3 refuses a HEAD without the key)
    assert store.exists("acme/S1/bronze/dm.parquet") and not store.exists("acme/S1/bronze/dm.parq")
    with store.working_copy("acme/S1/bronze") as folder:
        assert (folder / "acme/S1/bronze/dm.parquet").read_bytes() == ROWS
        (folder / "acme/S1/bronze/ae.parquet").write_bytes(b"ae rows")
    assert open_lake_store(settings).read_bytes("acme/S1/bronze/ae.parquet") == b"ae rows"
    store.delete("acme/S1/bronze/ae.parquet")
    assert store.list("acme/S1") == ["acme/S1/bronze/dm.parquet"]


def test_a_store_with_sse_c_off_names_the_cause_of_a_refused_read(settings) -> None:
    open_lake_store(settings).write_bytes("acme/S1/bronze/dm.parquet", ROWS)
    plain = open_lake_store(settings.model_copy(update={"lake": settings.lake.model_copy(update={"s3_sse_c": False})}))
    with pytest.raises(OSError, match="SSE-C .*lake.s3_sse_c must stay as it was"):
        plain.read_bytes("acme/S1/bronze/dm.parquet")


def test_concurrent_first_writers_agree_on_one_key(settings) -> None:
    """Eight stores (as eight run processes would have) write a new tenant's first objects at once: one
    key is created (a conditional PUT), and every object opens with it."""
    barrier, errors = threading.Barrier(8), []

    def first_write(i: int) -> None:
        try:
            barrier.wait()
            open_lake_store(settings).write_bytes(f"gamma/S1/bronze/part{i}.parquet", f"rows {i}".encode())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    store = open_lake_store(settings)
    assert [store.read_bytes(f"gamma/S1/bronze/part{i}.parquet") for i in range(8)] == [f"rows {i}".encode()
                                                                                       for i in range(8)]


def test_destroying_the_kek_shreds_the_tenants_parquet(settings) -> None:
    store = open_lake_store(settings)
    store.write_bytes("acme/S1/bronze/dm.parquet", ROWS)
    store.write_bytes("acme/S1/bronze/ae.parquet", b"ae rows")
    destroyed, unreadable = KeyService(settings).destroy("acme")
    assert destroyed and unreadable == 3  # the two Parquet objects and the wrapped SSE-C key
    with pytest.raises(KeyDestroyedError, match=r"cannot read or write s3://.*acme/S1/bronze/dm.parquet: .*"
                                                r"sse-c.key: key acme/v1 was destroyed"):
        open_lake_store(settings).read_bytes("acme/S1/bronze/dm.parquet")
    assert store.list("acme/S1") == ["acme/S1/bronze/ae.parquet", "acme/S1/bronze/dm.parquet"]  # ciphertext kept


def test_lineage_verification_rereads_sse_c_objects_with_the_tenants_key(settings) -> None:
    """verify-lineage re-hashes lake outputs recorded as ``s3://<bucket>``/``<object key>`` through the lake
    store (a plain GET of an SSE-C object is refused): unchanged, changed, missing, and unreadable after
    crypto-shredding are each told apart."""
    from trialsynth.hashing import sha256_bytes
    from trialsynth.lineage.verify import OutputChecker, OutputUnreadableError

    store = open_lake_store(settings)
    store.write_bytes("acme/S1/bronze/dm.parquet", ROWS)
    output = {"kind": "bytes", "namespace": f"s3://{store.bucket}", "name": store.object_key("acme/S1/bronze/dm.parquet")}
    assert OutputChecker(settings=settings).current_sha256(output, "acme", "S1") == sha256_bytes(ROWS)
    store.write_bytes("acme/S1/bronze/dm.parquet", ROWS + b"tampered")
    assert OutputChecker(settings=settings).current_sha256(output, "acme", "S1") == sha256_bytes(ROWS + b"tampered")
    assert OutputChecker(settings=settings).current_sha256({**output, "name": output["name"] + "x"}, "acme", "S1") is None
    KeyService(settings).destroy("acme")
    with pytest.raises(OutputUnreadableError, match="key acme/v1 was destroyed"):
        OutputChecker(settings=settings).current_sha256(output, "acme", "S1")
