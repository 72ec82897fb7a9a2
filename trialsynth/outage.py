"""A service of the stack stopping in the middle of a run: name it, and run the drop again once it is back.

The runner (:mod:`trialsynth.runner`) executes each drop's run in the calling process. When a configured
service stops answering during the run, either Dagster cannot record the run any more (PostgreSQL
holding Dagster's storage: the run raises out of the runner and stays STARTED in the storage) or a
step fails on it (the S3 lake or lineage buckets, ClickHouse, the registry). :func:`outage_of` recognizes that
from the error and names the service and its address from the settings; the runner then reports it in
one line instead of a stack trace and leaves a note in the study's lake folder
(:func:`note_interrupted`, local disk: it does not need the service that is down). The next call, once
the services answer, marks a run the storage still shows in progress as FAILED with the note's reason
and retries the drop (:func:`trialsynth.runner.recover_interrupted`), so running the same command
again runs the drop's whole pipeline (what ``trialsynth drops retry`` does by hand).

A run killed without a chance to leave a note (the process itself killed) stays STARTED: terminate it
from the Dagster UI, then ``trialsynth drops retry``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dagster._utils.error import SerializableErrorInfo  # what Dagster keeps of a step's exception
from sqlalchemy.engine import make_url

from trialsynth.ingest.drops import DropRecord
from trialsynth.settings import Settings

NOTES = "_interrupted"  # folder of notes in a study's lake folder: one JSON file per interrupted run key
# What clients say when the server is not there (psycopg2, SQLAlchemy, dagster-postgres, botocore, urllib3
# under clickhouse-connect); an error matching none of them is the run's own failure, not an outage.
_UNREACHABLE = re.compile(
    r"connection refused|could not connect|failed to establish a new connection|connection reset|"
    r"server closed the connection|too many retries for db connection|connection (?:timed out|aborted)|"
    r"is the server running|name or service not known|temporary failure in name resolution", re.IGNORECASE)


@dataclass(frozen=True)
class Outage:
    """A configured service that stopped answering: what it is for, where, and the client's words."""

    service: str  # e.g. "PostgreSQL (Dagster storage, model registry)"
    address: str  # host:port
    cause: str  # first line of the client's error

    def describe(self) -> str:
        return f"{self.service} at {self.address} stopped answering: {self.cause}"


def configured_services(settings: Settings) -> dict[str, str]:
    """``host:port`` -> what trialsynth uses there, for every networked service the settings configure."""
    found: dict[str, list[str]] = {}

    def add(kind: str, role: str, host: str | None, port: int | None) -> None:
        if host:
            found.setdefault(f"{host}:{port}", [kind]).append(role)

    if settings.dagster_storage == "postgres":
        add("PostgreSQL", "Dagster storage", settings.postgres.host, settings.postgres.port)
    registry = make_url(settings.registry_sqlalchemy_url)
    if registry.get_backend_name() == "postgresql":
        add("PostgreSQL", "model registry", registry.host, registry.port or 5432)
    def add_s3(role: str, endpoint_url: str | None) -> None:
        if endpoint_url:  # AWS itself (no endpoint URL) is not one host:port
            endpoint = urlsplit(endpoint_url)
            add("S3", role, endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80))

    lake = settings.lake
    if lake.store == "s3":
        add_s3(f"lake bucket {lake.s3_bucket}", lake.s3_endpoint_url)
        if lake.raw_bucket != lake.s3_bucket:
            add_s3(f"raw zone bucket {lake.raw_bucket}", lake.s3_endpoint_url)
    if settings.lineage.store == "s3":
        add_s3(f"lineage bucket {settings.lineage.s3_bucket}", settings.lineage.s3_endpoint_url)
    wh = settings.warehouse
    if wh.target == "clickhouse":
        add("ClickHouse", f"warehouse database {wh.clickhouse_database}", wh.clickhouse_host, wh.clickhouse_port)
    return {address: f"{kinds[0]} ({', '.join(kinds[1:])})" for address, kinds in found.items()}


def _chain(error: BaseException | SerializableErrorInfo | None) -> Iterator[tuple[str, str]]:
    """(class name, message) of an exception or a Dagster error info and of everything it was raised from."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, SerializableErrorInfo):
            yield error.cls_name or "", error.message
            error = error.cause or error.context
        else:
            yield type(error).__name__, str(error)
            error = error.__cause__ or error.__context__


def outage_of(error: BaseException | SerializableErrorInfo, settings: Settings) -> Outage | None:
    """The configured service whose absence caused ``error``, or None when ``error`` is something else.

    The error (or one it was raised from) must say the server could not be reached, and name the
    address of a configured service (``host:port`` as in an endpoint URL, ``"host", port N`` as libpq
    says, ``host='h', port=N`` as urllib3 says); dagster-postgres' "too many retries" names no address
    and means Dagster's own storage.
    """
    links = list(_chain(error))
    causes = [message for _, message in links if _UNREACHABLE.search(message)]
    if not causes:
        return None
    cause = causes[-1]  # the one nearest the socket: "connection to server at ... failed: Connection refused"
    text = "\n".join(message for _, message in links)
    services = configured_services(settings)
    for address, service in services.items():
        host, port = address.rsplit(":", 1)
        if address in text or re.search(rf"""['"]?{re.escape(host)}['"]?,\s*port[= ]{port}\b""", text):
            return Outage(service, address, _first_line(cause))
    if any(name == "DagsterPostgresException" for name, _ in links) and settings.dagster_storage == "postgres":
        address = f"{settings.postgres.host}:{settings.postgres.port}"
        return Outage(services.get(address, "PostgreSQL (Dagster storage)"), address, _first_line(cause))
    return None


def _first_line(message: str) -> str:
    """The message's first line, without the ``module.Class: `` prefix Dagster's error infos carry."""
    line = message.strip().splitlines()[0] if message.strip() else message
    return re.sub(r"^(?:[A-Za-z_][\w]*\.)+[A-Za-z_]\w*: ", "", line)


@dataclass(frozen=True)
class InterruptedRun:
    """The note a run interrupted by an outage leaves in its study's lake folder."""

    tenant: str
    study: str
    drop_id: str
    run_key: str
    reason: str


def _notes_dir(settings: Settings, tenant: str, study: str) -> Path:
    return settings.study_dir(tenant, study) / NOTES


def note_interrupted(settings: Settings, record: DropRecord, outage: Outage) -> InterruptedRun:
    """Leave the note of ``record``'s run, which ``outage`` interrupted (written whole, then renamed)."""
    note = InterruptedRun(record.tenant, record.study, record.drop_id, record.run_key,
                          f"interrupted: {outage.describe()}")
    folder = _notes_dir(settings, record.tenant, record.study)
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", record.run_key) + ".json"
    (folder / f".{name}.tmp").write_text(json.dumps(asdict(note)))
    (folder / f".{name}.tmp").replace(folder / name)
    return note


def interrupted_runs(settings: Settings) -> list[tuple[Path, InterruptedRun]]:
    """Every note left by an interrupted run, with its file."""
    if not settings.lake_dir.is_dir():
        return []
    return [(path, InterruptedRun(**json.loads(path.read_text())))
            for path in sorted(settings.lake_dir.glob(f"*/*/{NOTES}/*.json"))]

