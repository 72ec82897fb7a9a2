"""The two calls the S3 raw zone makes for the sponsor's bytes, on SeaweedFS with Object Lock:
``put_locked_object`` (write-once, COMPLIANCE retention read back after the write) and
``check_locked_object`` (later: still there, same bytes, retention unexpired, nothing written over)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from trialsynth.hashing import sha256_bytes
from trialsynth.lineage import ObjectExistsError, WormError, check_locked_object, put_locked_object

DATA = b"STUDYID,USUBJID\nS1,S1-001\n"
MINUTES = 10 / 1440


@pytest.fixture
def locked_bucket(seaweedfs):
    bucket = f"raw-{uuid.uuid4().hex[:12]}"
    seaweedfs.make_bucket(bucket, object_lock=True)
    return seaweedfs.client(), bucket


def test_put_locked_object_writes_once_under_compliance_retention(locked_bucket, seaweedfs):
    client, bucket = locked_bucket
    key = "acme/S1/raw/d1/v1/dm.csv"
    before = datetime.now(UTC)
    version = put_locked_object(client, bucket, key, DATA, retention_days=MINUTES)
    retention = client.get_object_retention(Bucket=bucket, Key=key, VersionId=version)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert before + timedelta(minutes=9) < retention["RetainUntilDate"] <= datetime.now(UTC) + timedelta(minutes=10)
    assert check_locked_object(client, bucket, key, version, sha256_bytes(DATA)) is None
    with pytest.raises(ObjectExistsError):  # a second landing of the same key never replaces the first
        put_locked_object(client, bucket, key, b"other bytes", retention_days=MINUTES)
    with pytest.raises(ClientError) as exc:  # nor can the locked version be deleted
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    plain = f"plain-{uuid.uuid4().hex[:12]}"
    seaweedfs.make_bucket(plain)  # no Object Lock: refused, never passed off as WORM
    with pytest.raises((WormError, ClientError)):
        put_locked_object(client, plain, key, DATA, retention_days=MINUTES)


def test_check_locked_object_names_what_changed(locked_bucket):
    client, bucket = locked_bucket
    key = "acme/S1/raw/d1/v1/ae.csv"
    version = put_locked_object(client, bucket, key, DATA, retention_days=MINUTES)
    where = f"s3://{bucket}/{key} (version {version})"
    assert check_locked_object(client, bucket, key, version, sha256_bytes(b"what the manifest says")) == (
        f"{where}: its bytes no longer hash to the recorded sha256 {sha256_bytes(b'what the manifest says')[:12]}...")
    client.put_object(Bucket=bucket, Key=key, Body=b"forged", ChecksumAlgorithm="SHA256")  # a plain overwrite
    assert check_locked_object(client, bucket, key, version, sha256_bytes(DATA)) == (
        f"{where}: written over since (1 newer version(s), 0 delete marker(s)); the locked version is intact")
    client.delete_object(Bucket=bucket, Key=key)
    assert "1 delete marker(s)" in check_locked_object(client, bucket, key, version, sha256_bytes(DATA))
    unlocked = "acme/S1/raw/d1/v1/unlocked.csv"  # written around put_locked_object
    put = client.put_object(Bucket=bucket, Key=unlocked, Body=DATA, ChecksumAlgorithm="SHA256")
    assert "has no COMPLIANCE retention" in check_locked_object(client, bucket, unlocked, put["VersionId"], sha256_bytes(DATA))
    assert check_locked_object(client, bucket, key, "0" * 32, sha256_bytes(DATA)).endswith("is gone")


def test_check_locked_object_names_expired_retention(locked_bucket):
    client, bucket = locked_bucket
    version = put_locked_object(client, bucket, "acme/S1/raw/short.csv", DATA, retention_days=2 / 86400)
    time.sleep(2.5)
    assert "retention expired at" in check_locked_object(client, bucket, "acme/S1/raw/short.csv", version, sha256_bytes(DATA))
