"""The S3 deployment (``lake.store: s3``, SeaweedFS as started by the stack): model artifacts and evidence
pack files are envelope-encrypted objects in the bucket, registered and served by ``lake:`` URI; ``keys
rewrap`` re-wraps them in the bucket; crypto-shredding leaves them unreadable (issue 12)."""

from __future__ import annotations

import json

import pytest

from trialsynth.artifacts import lake_store, read_evidence, save_model, write_encrypted
from trialsynth.registry import ModelRegistry
from trialsynth.security import KeyDestroyedError, KeyNotFoundError, KeyService, read_header
from trialsynth.security.envelope import MAGIC
from trialsynth.security.sse import sse_c_args, sse_c_key_location
from trialsynth.settings import Settings

BUCKET = "security-objects"
MODEL = {"weights": [1.0, 2.0], "marker": "PLAINTEXT-S3-MODEL-55ab"}


@pytest.fixture
def keys(seaweedfs, tmp_path, monkeypatch) -> KeyService:
    seaweedfs.make_bucket(BUCKET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    settings = Settings(data_dir=tmp_path / "data", warehouse={"target": "clickhouse"},
                        lake={"store": "s3", "s3_bucket": BUCKET, "s3_prefix": tmp_path.name,
                              "s3_endpoint_url": seaweedfs.endpoint})
    return KeyService(settings)


def test_artifacts_and_packs_live_encrypted_in_the_bucket_and_survive_rewrap_until_shredded(keys):
    store = lake_store(keys.settings)
    stored = save_model(MODEL, "acme/S1/synthesis/models/r1.pkl", "acme", keys)
    assert stored.location == f"s3://{BUCKET}/{keys.settings.lake.s3_prefix}/lake/acme/S1/synthesis/models/r1.pkl"
    blob = store.read_bytes("acme/S1/synthesis/models/r1.pkl")
    assert blob.startswith(MAGIC) and MODEL["marker"].encode() not in blob
    assert not (keys.settings.lake_dir / "acme").exists(), "an S3 deployment wrote the artifact to local disk"
    registry = ModelRegistry(f"sqlite:///{keys.settings.data_path / 'registry.sqlite'}", keys=keys)
    model_id = registry.register(kind="synthesizer", name="acme/S1/copula", trained_by="test",
                                 training_data_sha256="0" * 64, artifact_path=stored.uri)
    assert registry.get(model_id).artifact_uri == "lake:acme/S1/synthesis/models/r1.pkl"
    pack = write_encrypted(json.dumps({"run_id": "r1"}).encode(), "acme/S1/evidence/r1/evidence.json", "acme", keys)
    assert json.loads(read_evidence(pack.uri, "acme", keys)) == {"run_id": "r1"}

    keys.rotate("acme")
    report = keys.rewrap("acme")
    assert set(report.rewrapped) >= {stored.location, pack.location} and not report.failed
    assert read_header(store.read_bytes("acme/S1/synthesis/models/r1.pkl")).key_id.version == 2
    assert registry.load_model(model_id) == MODEL  # the registered hashes still hold after rewrap
    assert keys.status("acme")[0].objects[report.key_id] >= 2

    destroyed, unreadable = keys.destroy("acme")
    assert len(destroyed) == 2 and unreadable >= 2
    # refused by the envelope's KEK, or before that by the lake's SSE-C key (wrapped by the same KEK) where
    # the store was made after the destroy: either way naming the object and the key
    with pytest.raises(KeyDestroyedError, match=rf"cannot decrypt {stored.location}: key acme/v2 was destroyed"):
        registry.load_model(model_id)
    with pytest.raises(KeyDestroyedError, match=rf"cannot read or write {pack.location}: .*sse-c.key: key acme/v2 was destroyed"):
        read_evidence(pack.uri, "acme", keys)


def test_sse_c_key_is_provisioned_once_wrapped_by_the_kek_and_shredded_with_it(keys, seaweedfs):
    from botocore.exceptions import ClientError

    store, client = lake_store(keys.settings), seaweedfs.client()
    with pytest.raises(KeyNotFoundError, match="no SSE-C key .*keys rotate --tenant acme"):
        sse_c_args("acme", keys, store)
    keys.rotate("acme")  # provisions it
    args = sse_c_args("acme", keys, store)
    assert args["SSECustomerAlgorithm"] == "AES256" and len(args["SSECustomerKey"]) == 32
    wrapped = store.read_bytes(sse_c_key_location("acme"))
    assert wrapped.startswith(MAGIC) and args["SSECustomerKey"] not in wrapped
    object_key = f"{keys.settings.lake.s3_prefix}/lake/acme/S1/bronze/dm.parquet"
    client.put_object(Bucket=BUCKET, Key=object_key, Body=b"subject rows", ChecksumAlgorithm="SHA256", **args)
    with pytest.raises(ClientError):
        client.get_object(Bucket=BUCKET, Key=object_key)  # no key: refused
    keys.rotate("acme")
    report = keys.rewrap("acme")  # the lake store reads the SSE-C object with the tenant's key: not an envelope
    assert not report.failed
    assert store.read_bytes("acme/S1/bronze/dm.parquet") == b"subject rows"
    assert read_header(store.read_bytes(sse_c_key_location("acme"))).key_id.version == 2
    again = sse_c_args("acme", keys, store)
    assert again == args  # the same key: rotating and rewrapping the KEK keep objects readable
    assert client.get_object(Bucket=BUCKET, Key=object_key, **again)["Body"].read() == b"subject rows"
    keys.destroy("acme")
    with pytest.raises(KeyDestroyedError, match=r"sse-c.key: key acme/v2 was destroyed"):
        sse_c_args("acme", keys, store)
