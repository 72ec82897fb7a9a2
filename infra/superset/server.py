"""Start ``run_superset.sh`` on a throw-away data dir and Superset home (tests, benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from infra.stack.procs import stop_process_group
from infra.superset.spec import ROOT

RUN_SCRIPT = ROOT / "infra" / "superset" / "run_superset.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_superset(data_dir: Path, home: Path, log_path: Path, timeout_s: float = 360,
                     workers: int = 2, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run ``run_superset.sh`` with ``TRIALSYNTH_DATA_DIR=data_dir`` (its warehouse is published) and
    ``SUPERSET_HOME=home`` on a free port, plus ``env`` (e.g. settings choosing the ClickHouse
    target); yields the base URL once provisioning is done, stops the whole process group on exit.
    Raises RuntimeError with the log tail when it does not get ready."""
    port = free_port()
    env = {**os.environ, "TRIALSYNTH_DATA_DIR": str(data_dir), "SUPERSET_HOME": str(home),
           "SUPERSET_PORT": str(port), "SUPERSET_WORKERS": str(workers), **(env or {})}
    env.pop("SUPERSET_ADMIN_PASSWORD", None)
    ready = Path(home) / "ready"
    ready.unlink(missing_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(RUN_SCRIPT)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"run_superset.sh did not get ready (exit {proc.poll()}):\n"
                                       + Path(log_path).read_text()[-4000:])
                time.sleep(1)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process_group(proc, timeout_s=30)
