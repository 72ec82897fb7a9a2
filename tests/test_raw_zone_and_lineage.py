from __future__ import annotations

import json
import os
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_drop
from trialsynth.hashing import sha256_bytes
from trialsynth.ingest.landing import open_drop
from trialsynth.ingest.raw_zone import land_drop
from trialsynth.lineage import (
    LocalLineageStore,
    ObjectExistsError,
    WormError,
    put_locked_object,
    verify_chain,
)


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
    assert v1.read_bytes("dm.csv") == b"a,b\n1,2\n"  # v1 untouched
    manifest = json.loads((v2.path / "_manifest.json").read_text())
    assert manifest["files"]["dm.csv"] == v2.files["dm.csv"] != v1.files["dm.csv"]


def test_raw_zone_bytes_under_object_lock_on_s3(seaweedfs):
    """put_locked_object: how the S3 deployment writes the sponsor's raw bytes (and lineage objects)."""
    bucket = f"raw-{uuid.uuid4().hex[:12]}"
    seaweedfs.make_bucket(bucket, object_lock=True)
    client, key = seaweedfs.client(), "acme/S1/d1/v1/dm.csv"
    version = put_locked_object(client, bucket, key, b"a,b\n1,2\n", retention_days=10 / 1440)
    retention = client.get_object_retention(Bucket=bucket, Key=key, VersionId=version)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    with pytest.raises(ObjectExistsError):
        put_locked_object(client, bucket, key, b"a,b\n1,3\n", retention_days=1)
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    plain = f"plain-{uuid.uuid4().hex[:12]}"
    seaweedfs.make_bucket(plain)  # no Object Lock: the write must not pass as WORM
    with pytest.raises((WormError, ClientError)):
        put_locked_object(client, plain, key, b"x", retention_days=1)


def test_lineage_resource_records_outputs_that_verification_rechecks(settings):
    from orchestration.resources import LineageResource

    out = settings.lake_dir / "acme" / "S1" / "bronze" / "dm.parquet"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"bronze bytes")
    rec = LineageResource().record("acme|S1", asset_key="bronze/dm", input_sha256s={"dm.csv": "ab" * 32},
                                   output_sha256=sha256_bytes(b"bronze bytes"), output_path=out, code_version="t")
    assert rec["outputs"] == [{"namespace": "file", "name": str(out.resolve()), "sha256": sha256_bytes(b"bronze bytes"),
                               "kind": "bytes"}]
    uuid.UUID(rec["run_id"])  # outside Dagster the run id is a fresh UUID (OpenLineage needs one)
    with pytest.raises(ValueError, match="output_path needs output_sha256"):
        LineageResource().record("acme|S1", asset_key="x", output_path=out)
    records = LocalLineageStore(settings.lake_dir).read("acme", "S1")  # the settings' key signed it
    assert verify_chain(records).ok and records[0]["asset_key"] == "bronze/dm"
