"""The stack's ClickHouse: the chDB endpoint of ``infra/clickhouse`` (a local stand-in for a
ClickHouse server) in its own process, with a password generated once per state folder."""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "TRIALSYNTH_CLICKHOUSE_PASSWORD"


@dataclass(frozen=True)
class ClickHouseEndpoint:
    """A running endpoint: ``http://host:port``, the account it accepts, its state folder and pid."""

    host: str
    port: int
    user: str
    password: str
    directory: Path
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return response.read() == b"Ok.\n"
    except OSError:
        return False


def _password(directory: Path) -> str:
    path = directory / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())["password"]
    password = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(json.dumps({"user": "default", "password": password}))
    return password


def start_clickhouse_endpoint(directory: Path, port: int | None = None, timeout_s: float = 60) -> ClickHouseEndpoint:
    """Serve a chDB data folder (``directory/data``) on 127.0.0.1:``port`` (None: a free port) as user
    ``default`` with a password generated once per folder (``credentials.json``, mode 0600).

    Reuses an endpoint already running on this folder. Raises StackError when the port is taken or it
    does not answer ``/ping`` within ``timeout_s`` (with its log tail). Stop it with
    :func:`stop_clickhouse_endpoint`.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    pid_file, log, port_file = directory / "endpoint.pid", directory / "endpoint.log", directory / "port"
    password = _password(directory)
    pid, proc = running_pid(pid_file, str(directory)), None
    if pid is None:
        if port is not None:
            require_free(port, "ClickHouse endpoint", "--clickhouse-port")
        port = port or free_port()
        port_file.unlink(missing_ok=True)
        env = {**os.environ, PASSWORD_ENV: password, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        proc = spawn([sys.executable, "-m", "infra.clickhouse", "--path", str(directory / "data"), "--port", str(port),
                      "--password-env", PASSWORD_ENV, "--ready-file", str(port_file)], pid_file, log, env=env, cwd=ROOT)
        pid = proc.pid
    wait_until(port_file.exists, "ClickHouse endpoint", timeout_s, proc, log)
    endpoint = ClickHouseEndpoint(HOST, int(port_file.read_text()), "default", password, directory, pid)
    try:
        wait_until(lambda: _ping(endpoint.url), f"ClickHouse endpoint on {endpoint.url}", timeout_s, proc, log)
    except StackError:
        stop_clickhouse_endpoint(directory)
        raise
    return endpoint


def stop_clickhouse_endpoint(directory: Path) -> bool:
    """Stop the endpoint serving ``directory``; False when none was running."""
    directory = Path(directory).resolve()
    return stop_pid(directory / "endpoint.pid", str(directory))
