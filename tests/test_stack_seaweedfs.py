"""SeaweedFS as started by the stack: keys required, Object Lock buckets enforce retention, restarts
keep data and keys, a taken port is reported with what to do."""

from __future__ import annotations

import datetime as dt
import socket

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.stack.procs import StackError
from infra.stack.seaweedfs import start_seaweedfs, stop_seaweedfs


def test_unknown_keys_are_refused(seaweedfs) -> None:
    stranger = boto3.client("s3", endpoint_url=seaweedfs.endpoint, aws_access_key_id="nobody",
                            aws_secret_access_key="wrong", region_name="us-east-1")
    with pytest.raises(ClientError):
        stranger.list_buckets()


def test_object_lock_bucket_refuses_deleting_a_locked_version(seaweedfs) -> None:
    seaweedfs.make_bucket("fixture-worm", object_lock=True)
    seaweedfs.make_bucket("fixture-worm", object_lock=True)  # idempotent
    s3 = seaweedfs.client()
    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    version = s3.put_object(Bucket="fixture-worm", Key="log/1.json", Body=b"{}", ChecksumAlgorithm="SHA256",
                            ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)["VersionId"]
    with pytest.raises(ClientError):
        s3.delete_object(Bucket="fixture-worm", Key="log/1.json", VersionId=version)
    assert s3.get_object(Bucket="fixture-worm", Key="log/1.json", VersionId=version)["Body"].read() == b"{}"


def test_plain_bucket_cannot_be_turned_into_a_lock_bucket(seaweedfs) -> None:
    seaweedfs.make_bucket("fixture-plain")
    with pytest.raises(StackError, match="without Object Lock"):
        seaweedfs.make_bucket("fixture-plain", object_lock=True)


def test_taken_port_names_the_service_and_the_fix(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StackError, match=rf"SeaweedFS S3: port {port} .* already taken.*--s3-port"):
            start_seaweedfs(tmp_path, port)


def test_restart_keeps_objects_and_keys(tmp_path_factory) -> None:
    directory = tmp_path_factory.mktemp("seaweedfs-restart")
    first = start_seaweedfs(directory, buckets=("kept",))
    first.client().put_object(Bucket="kept", Key="a", Body=b"1", ChecksumAlgorithm="SHA256")
    assert stop_seaweedfs(directory)
    second = start_seaweedfs(directory)
    try:
        assert (second.access_key, second.secret_key) == (first.access_key, first.secret_key)
        assert second.client().get_object(Bucket="kept", Key="a")["Body"].read() == b"1"
    finally:
        stop_seaweedfs(directory)
