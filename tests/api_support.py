"""Support for the API tests: a real Dagster webserver (and, on demand, its daemon) on a free loopback
port with its own DAGSTER_HOME and data folder, started once per test session and shared by every
test that needs it; tokens and apps on that data folder.

Without the daemon, runs the API launches stay QUEUED (nothing runs, nothing costs CPU); the tests that
need a run to finish start the daemon (:func:`start_daemon`), which first cancels the runs left queued."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import fast_study_config
from trialsynth.dagster_home import HEADER, dagster_yaml
from trialsynth.settings import PROJECT_ROOT, Settings

BIN = Path(sys.executable).parent
STARTUP_S = 240  # the code location imports torch, dbt and every asset module: slow on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DagsterServer:
    root: Path
    port: int
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)
    daemon: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def settings(self, **api) -> Settings:
        """Settings of an API on this server's data folder (``api`` overrides api.* settings)."""
        return Settings(data_dir=self.data_dir, dagster_home=self.root / "dagster_home",
                        studies_dir=self.root / "studies", api={"dagster_url": self.url, **api})

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(self.url, json={"query": query, "variables": variables or {}}, timeout=30)
        response.raise_for_status()
        return response.json()["data"]

    def stop(self) -> None:
        for proc in [*self.procs, *([self.daemon] if self.daemon else [])]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.procs, *([self.daemon] if self.daemon else [])]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


_server: DagsterServer | None = None


def _start(root: Path) -> DagsterServer:
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=root / "data", dagster_home=root / "dagster_home", studies_dir=root / "studies")
    home = settings.dagster_home_path
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(HEADER + yaml.safe_dump(dagster_yaml(settings), sort_keys=True))
    fast_study_config(root / "studies", "ACME-001")
    env = {**os.environ, "DAGSTER_HOME": str(home), "TRIALSYNTH_DAGSTER_HOME": str(home),
           "TRIALSYNTH_DATA_DIR": str(root / "data"), "TRIALSYNTH_STUDIES_DIR": str(root / "studies"),
           "PYTHONUNBUFFERED": "1"}
    server = DagsterServer(root, free_port(), env)
    log = open(root / "webserver.log", "w")  # noqa: SIM115 - kept open for the server's life
    server.procs.append(subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(server.port), "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.procs[0].poll() is not None:
            break
        try:
            nodes = server.graphql("{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }")
            if nodes["repositoriesOrError"].get("nodes"):
                return server
        except (requests.RequestException, KeyError, TypeError):
            pass
        time.sleep(1.0)
    server.stop()
    pytest.fail(f"the Dagster webserver did not load the code location in {STARTUP_S} s: "
                f"{(root / 'webserver.log').read_text()[-3000:]}")


@pytest.fixture(scope="session")
def dagster_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> DagsterServer:
    """The session's Dagster webserver (started by the first test that asks, stopped at the end)."""
    global _server
    if _server is None:
        _server = _start(tmp_path_factory.mktemp("api_dagster"))
        request.config.add_cleanup(_stop_server)
    return _server


def _stop_server() -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None


def start_daemon(server: DagsterServer) -> None:
    """Start the daemon (run queue, launcher) once; runs queued before are canceled first."""
    if server.daemon is not None:
        return
    queued = server.graphql('{ runsOrError(filter: {statuses: [QUEUED]}) { ... on Runs { results { runId } } } }')
    run_ids = [r["runId"] for r in queued["runsOrError"]["results"]]
    if run_ids:
        server.graphql("mutation($ids: [String!]!) { terminateRuns(runIds: $ids) { __typename } }", {"ids": run_ids})
    log = open(server.root / "daemon.log", "w")  # noqa: SIM115
    server.daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=PROJECT_ROOT,
                                     env=server.env, stdout=log, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


UNREACHABLE = "http://127.0.0.1:9/graphql"  # discard port: nothing listens


def local_settings(tmp_path: Path, **api) -> Settings:
    """Settings of an API on its own data folder, its Dagster unreachable unless ``dagster_url`` is given."""
    return Settings(data_dir=tmp_path / "data", dagster_home=tmp_path / "dagster_home",
                    studies_dir=tmp_path / "studies", api={"dagster_url": UNREACHABLE, **api})


def client(settings: Settings, **kwargs):
    """A TestClient on ``create_app(settings, **kwargs)``; the app is ``client.app``."""
    from fastapi.testclient import TestClient

    from trialsynth.api.app import create_app

    return TestClient(create_app(settings, **kwargs), raise_server_exceptions=False)


def auth(settings: Settings, tenant: str = "acme", subject: str = "alice", **kwargs) -> dict[str, str]:
    from trialsynth.api.auth import mint_token

    return {"Authorization": f"Bearer {mint_token(settings, tenant, subject, **kwargs)}"}
