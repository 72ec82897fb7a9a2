"""Ports, pid files and background processes shared by the stack's services."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A service cannot start or stop; the message says what to do."""


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` and it can be bound."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(offset: int = 0) -> int:
    """A free port on 127.0.0.1; with ``offset``, one whose ``port + offset`` is free too (SeaweedFS
    dials some gRPC ports at http port + 10000 whatever it is told)."""
    candidates = random.sample(range(20000, 65536 - offset), 200) if offset else [0] * 50
    for candidate in candidates:
        with socket.socket() as s:
            try:
                s.bind((HOST, candidate))
            except OSError:
                continue
            port = s.getsockname()[1]
        if not offset or port_is_free(port + offset):
            return port
    raise StackError(f"no free port on {HOST} (with port+{offset} free too)")


def require_free(port: int, service: str, setting: str) -> None:
    """Raise a StackError naming the service and what to do when ``port`` is taken."""
    if not port_is_free(port):
        raise StackError(f"{service}: port {port} on {HOST} is already taken. Stop whatever listens there "
                         f"(`ss -ltnp 'sport = :{port}'` shows it), or choose another port with {setting}, "
                         "or leave it unset to pick a free one.")


def wait_until(check: Callable[[], bool], what: str, timeout_s: float, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    """Poll ``check`` every 0.1 s until it is true; StackError with the log tail on timeout or exit."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        exited = proc is not None and proc.poll() is not None
        if exited or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            state = f"exited with {proc.returncode}" if exited else f"not ready after {timeout_s:.0f} s"
            raise StackError(f"{what} {state}" + (f"; log {log}:\n{tail}" if log else ""))
        time.sleep(0.1)


def spawn(argv: Sequence[str], pid_file: Path, log_file: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None, user: str | None = None) -> subprocess.Popen:
    """Start ``argv`` in its own session (so stopping it never signals us), output to ``log_file``,
    and record its pid in ``pid_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
                                user=user)
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` when that process is alive and its command line contains ``marker``
    (a pid reused by an unrelated process is never ours to signal)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    return pid if marker in cmdline else None


def stop_pid(pid_file: Path, marker: str, timeout_s: float = 15) -> bool:
    """SIGTERM the process recorded in ``pid_file`` (SIGKILL after ``timeout_s``); False when none ran."""
    pid = running_pid(pid_file, marker)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM the process group ``proc`` leads (started with ``start_new_session=True``), SIGKILL it
    after ``timeout_s``, and reap ``proc``."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
