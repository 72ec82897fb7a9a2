"""The stack's PostgreSQL: a private cluster (initdb/pg_ctl from Debian's packages) on 127.0.0.1,
with a login role for trialsynth and its databases (Dagster storage, model registry).

initdb refuses to run as root, so under root the cluster belongs to the ``postgres`` OS user; its
folder must then be reachable by that user (every parent folder world-searchable, like ``/work``
or ``/tmp``, not pytest's private tmp folders).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from infra.stack.procs import HOST, StackError, free_port, require_free, wait_until

ROLE = "trialsynth"
APP_ROLE = "trialsynth_app"  # the non-owner role the product's tenant tables are used through (RLS)
DATABASES = ("dagster", "registry")
OS_USER = "postgres"


@dataclass(frozen=True)
class Postgres:
    """A running cluster: the trialsynth role's login and the superuser's (for tests and setup)."""

    host: str
    port: int
    user: str
    password: str
    superuser_password: str
    databases: tuple[str, ...]
    directory: Path
    app_password: str = ""  # of APP_ROLE (trialsynth.tenancy: NOBYPASSRLS, owns nothing)

    def url(self, database: str, with_password: bool = False, user: str | None = None) -> str:
        """SQLAlchemy URL (psycopg2) of one database as ``user`` (default: the trialsynth role; APP_ROLE
        for the tenant tables); without the password unless asked (libpq then reads it from
        PGPASSWORD or the PGPASSFILE the stack writes)."""
        user = user or self.user
        password = self.app_password if user == APP_ROLE else self.password
        login = f"{user}:{password}" if with_password else user
        return f"postgresql+psycopg2://{login}@{self.host}:{self.port}/{database}"

    def superuser_url(self, database: str) -> str:
        """SQLAlchemy URL of one database as the cluster's superuser (setup only: roles, RLS)."""
        return f"postgresql+psycopg2://postgres:{self.superuser_password}@{self.host}:{self.port}/{database}"


def postgres_bindir() -> Path:
    """Folder of initdb/pg_ctl: the newest /usr/lib/postgresql/<N>/bin, else the one on PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise StackError("PostgreSQL binaries (initdb, pg_ctl) not found: run `make stack-up` (it runs "
                     "`apt-get install -y postgresql`) or install PostgreSQL 15 or newer.")


def _as_owner() -> dict:
    """subprocess keyword arguments running a command as the cluster's OS user."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(OS_USER)
    except KeyError as exc:
        raise StackError(f"running as root, PostgreSQL needs the `{OS_USER}` OS user (initdb refuses root): "
                         "install the postgresql package, which creates it.") from exc
    return {"user": OS_USER, "group": OS_USER}


def _give_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, OS_USER, OS_USER)


def _check_reachable(directory: Path) -> None:
    if os.geteuid() != 0:
        return
    for parent in directory.parents:
        if not parent.stat().st_mode & 0o001:
            raise StackError(f"PostgreSQL runs as the `{OS_USER}` user, who cannot enter {parent} (mode "
                             f"{oct(parent.stat().st_mode & 0o777)}): put the cluster folder {directory} "
                             "under a world-searchable folder (e.g. /tmp or the project folder).")


def _run(args: list[str], what: str) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, **_as_owner())
    if done.returncode != 0:
        raise StackError(f"{what} failed ({' '.join(args[:2])}): {(done.stderr or done.stdout).strip()[-2000:]}")
    return done


def _secrets(directory: Path) -> dict:
    path = directory / "credentials.json"
    saved = json.loads(path.read_text()) if path.exists() else {
        "user": ROLE, "password": secrets.token_urlsafe(24), "superuser_password": secrets.token_urlsafe(24)}
    if "app_password" not in saved:  # clusters made before tenancy get it on their next start
        saved["app_password"] = secrets.token_urlsafe(24)
        path.touch(mode=0o600)
        path.write_text(json.dumps(saved))
    return saved


def _initdb(bindir: Path, data: Path, superuser_password: str) -> None:
    data.mkdir(mode=0o700)
    _give_to_owner(data)
    pwfile = data.parent / "initdb.pw"
    pwfile.write_text(superuser_password + "\n")
    pwfile.chmod(0o600)
    _give_to_owner(pwfile)
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
              "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
              "--no-sync"],  # a half-made cluster is deleted and made again, so initdb needs no fsync
             "initdb")
    finally:
        pwfile.unlink(missing_ok=True)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"\n# trialsynth stack: loopback only, sockets in the stack folder\nlisten_addresses = '{HOST}'\n"
                   f"unix_socket_directories = '{data.parent / 'run'}'\n")


def running_port(data: Path) -> int | None:
    """The port of the postmaster running on ``data`` (from postmaster.pid), or None."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return port


def _connect(port: int, password: str, database: str = "postgres", user: str = "postgres"):
    import psycopg2

    return psycopg2.connect(host=HOST, port=port, user=user, password=password, dbname=database, connect_timeout=5)


def _ensure_role_and_databases(port: int, creds: dict, databases: tuple[str, ...]) -> None:
    for name in (creds["user"], *databases):
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise StackError(f"PostgreSQL: {name!r} is not a plain lower-case identifier")
    conn = _connect(port, creds["superuser_password"])
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (creds["user"],))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(f"{verb} ROLE {creds['user']} LOGIN PASSWORD %s", (creds["password"],))
            for database in databases:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if not cur.fetchone():
                    cur.execute(f"CREATE DATABASE {database} OWNER {creds['user']}")
    finally:
        conn.close()


def start_postgres(directory: Path, port: int | None = None, databases: tuple[str, ...] = DATABASES,
                   timeout_s: float = 60) -> Postgres:
    """Start (creating on first use) a private PostgreSQL cluster in ``directory`` on 127.0.0.1:``port``
    (None: the port it had, else a free one), with role ``trialsynth`` (generated password, kept in
    ``credentials.json`` mode 0600) owning ``databases``.

    Reuses a cluster already running on this folder. Raises StackError when the binaries are missing,
    the port is taken, or the server does not start (with its log tail). Stop with :func:`stop_postgres`.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    _check_reachable(directory)
    _give_to_owner(directory)
    data, log = directory / "data", directory / "postgres.log"
    creds = _secrets(directory)
    running = running_port(data)
    if running is None:
        bindir = postgres_bindir()
        if port is not None:
            require_free(port, "PostgreSQL", "--pg-port")
        port = port or free_port()
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)  # a half-made cluster from an interrupted initdb
            _initdb(bindir, data, creds["superuser_password"])
        (directory / "run").mkdir(exist_ok=True)
        _give_to_owner(directory / "run")
        log.touch()
        _give_to_owner(log)
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(int(timeout_s)),
              "-o", f"-p {port}", "start"], f"PostgreSQL start (log {log})")
        running = port
    wait_until(lambda: _can_connect(running, creds["superuser_password"]), f"PostgreSQL on {HOST}:{running}",
               timeout_s, log=log)
    _ensure_role_and_databases(running, creds, databases)
    return Postgres(HOST, running, creds["user"], creds["password"], creds["superuser_password"], tuple(databases),
                    directory, creds["app_password"])


def _can_connect(port: int, password: str) -> bool:
    try:
        _connect(port, password).close()
        return True
    except Exception:  # psycopg2.OperationalError while the server starts
        return False


def stop_postgres(directory: Path, mode: Literal["fast", "immediate"] = "fast") -> bool:
    """Stop the cluster in ``directory``; False when it was not running. ``fast``: a clean shutdown;
    ``immediate``: what a crash does (no checkpoint, clients cut at once; recovery at the next start),
    for outage tests."""
    data = Path(directory).resolve() / "data"
    if running_port(data) is None:
        return False
    _run([str(postgres_bindir() / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"], "PostgreSQL stop")
    return True
