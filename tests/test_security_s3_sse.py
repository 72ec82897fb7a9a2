"""What the S3 deployment's object store (SeaweedFS 4.48) does with server-side encryption, measured on a
real ``weed mini``: docs/security.md states these facts, so they are pinned here."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

stack = pytest.importorskip("infra.stack.seaweedfs")

BUCKET = "sse-check"
MARKER = b"PLAINTEXT-MARKER-4f1c"


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator:
    try:
        stack.weed_binary()
    except stack.StackError as exc:
        pytest.skip(f"SeaweedFS not installed: {exc}")
    directory = tmp_path_factory.mktemp("seaweedfs-sse")
    info = stack.start_seaweedfs(directory, buckets=(BUCKET,))
    try:
        yield info
    finally:
        stack.stop_seaweedfs(directory)


def _on_disk(directory, needle: bytes) -> bool:
    found = subprocess.run(["grep", "-rlF", "--binary-files=text", needle.decode(), str(directory / "data")],
                           capture_output=True, text=True)
    return bool(found.stdout.strip())


def test_sse_c_objects_need_their_key_and_are_not_stored_in_plaintext(s3):
    client, key = s3.client(), os.urandom(32)
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    body = MARKER + b"-C-" + os.urandom(64 * 1024)
    control = MARKER + b"-P-" + os.urandom(64 * 1024)
    client.put_object(Bucket=BUCKET, Key="ssec.bin", Body=body, ChecksumAlgorithm="SHA256", **sse_c)
    client.put_object(Bucket=BUCKET, Key="plain.bin", Body=control, ChecksumAlgorithm="SHA256")
    assert client.get_object(Bucket=BUCKET, Key="ssec.bin", **sse_c)["Body"].read() == body
    with pytest.raises(ClientError):
        client.get_object(Bucket=BUCKET, Key="ssec.bin")
    with pytest.raises(ClientError):
        client.get_object(Bucket=BUCKET, Key="ssec.bin", SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    assert _on_disk(s3.directory, MARKER + b"-P-"), "control: an unencrypted object is visible in the volume files"
    assert not _on_disk(s3.directory, MARKER + b"-C-"), "an SSE-C object's plaintext reached the volume files"


def test_sse_kms_is_refused_without_a_configured_kms(s3):
    with pytest.raises(ClientError):
        s3.client().put_object(Bucket=BUCKET, Key="ssekms.bin", Body=b"x", ServerSideEncryption="aws:kms",
                               SSEKMSKeyId="tenant-acme", ChecksumAlgorithm="SHA256")


def test_sse_s3_is_accepted_with_a_server_managed_key(s3):
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key="sses3.bin", Body=b"x", ServerSideEncryption="AES256", ChecksumAlgorithm="SHA256")
    assert client.head_object(Bucket=BUCKET, Key="sses3.bin")["ServerSideEncryption"] == "AES256"
