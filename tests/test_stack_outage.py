"""A service of the stack killed in the middle of a run (PostgreSQL: Dagster's storage and the model
registry; SeaweedFS: the S3 lineage store): the run fails with one line naming the service, not a
stack trace; nothing half-written is visible afterwards; once the service is back, running again
completes the drop.

On a stack of its own (free ports, temporary folder), so the session's `stack` is never disturbed;
each service is restarted on its port after the kill, as ``make stack-up`` would.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator

import dagster as dg
import psycopg2
import pytest

from infra.stack.postgres import stop_postgres
from infra.stack.seaweedfs import stop_seaweedfs
from infra.stack.services import LAKE_BUCKET, LINEAGE_BUCKET, RAW_BUCKET, Stack, start_all
from tests.conftest import fast_study_config
from tests.stack_fixtures import running_stack
from trialsynth.demo.generator import generate_study, write_drop
from trialsynth.domains import DOMAINS
from trialsynth.ingest.drops import INGESTED, DropRegistry
from trialsynth.lineage import open_store, run_verification
from trialsynth.outage import outage_of
from trialsynth.runner import INTERRUPTED, outcome_lines, process_landing_zone
from trialsynth.settings import Settings, get_settings
from trialsynth.storage import IncompletePublishError, LakeStore, open_lake_store

STUDY, SUBJECTS = "ACME-001", 40
# The part of the study pipeline these tests run: enough for a run with several steps after the kill.
ASSETS = [dg.AssetKey("raw_drop"), dg.AssetKey("study_matrix"), *(dg.AssetKey(["bronze", d]) for d in DOMAINS),
          dg.AssetKey(["bronze", "domains"])]


STACK_SETTINGS = Settings(
    dagster_storage="postgres", postgres={"host": "127.0.0.1", "port": 5433},
    registry_url="postgresql+psycopg2://trialsynth_app@127.0.0.1:5433/registry",
    lineage={"store": "s3", "s3_endpoint_url": "http://127.0.0.1:8333"},
    warehouse={"target": "clickhouse", "clickhouse_host": "127.0.0.1", "clickhouse_port": 8123})
# ... with the lake in S3 too: the same SeaweedFS holds the lake, raw zone and lineage buckets
STACK_LAKE_SETTINGS = STACK_SETTINGS.model_copy(update={"lake": STACK_SETTINGS.lake.model_copy(update={
    "store": "s3", "s3_bucket": LAKE_BUCKET, "s3_raw_bucket": RAW_BUCKET, "s3_endpoint_url": "http://127.0.0.1:8333"})})
S3_SERVICE = f"S3 (lake bucket {LAKE_BUCKET}, raw zone bucket {RAW_BUCKET}, lineage bucket {LINEAGE_BUCKET})"


def _raised(*chain: BaseException) -> BaseException:
    """``chain[0]`` raised from ``chain[1]``, raised from ``chain[2]`` ..."""
    for outer, inner in zip(chain, chain[1:], strict=False):
        outer.__cause__ = inner
    return chain[0]


@pytest.mark.parametrize(("error", "service", "address", "cause"), [
    (_raised(RuntimeError("too many retries for DB connection"),
             OSError('connection to server at "127.0.0.1", port 5433 failed: Connection refused\n\tIs the server running')),
     "PostgreSQL (Dagster storage, model registry)", "127.0.0.1:5433",
     'connection to server at "127.0.0.1", port 5433 failed: Connection refused'),
    (ConnectionError('Could not connect to the endpoint URL: "http://127.0.0.1:8333/trialsynth-lineage/x.json"'),
     "S3 (lineage bucket trialsynth-lineage)", "127.0.0.1:8333", "Could not connect to the endpoint URL"),
    (_raised(RuntimeError("dbt build failed"), OSError("HTTPConnectionPool(host='127.0.0.1', port=8123): Max retries "
                                                       "exceeded (Failed to establish a new connection: refused)")),
     "ClickHouse (warehouse database trialsynth)", "127.0.0.1:8123", "HTTPConnectionPool"),
])
def test_an_outage_names_the_configured_service(error, service, address, cause) -> None:
    outage = outage_of(error, STACK_SETTINGS)
    assert (outage.service, outage.address) == (service, address) and outage.cause.startswith(cause)
    assert outage.describe().startswith(f"{service} at {address} stopped answering: ")


def test_a_lake_outage_names_the_lake_bucket() -> None:
    """What the S3 lake store raises when SeaweedFS is gone in the middle of a lake write (trialsynth.storage)."""
    from trialsynth.storage import S3LakeStore

    try:
        with S3LakeStore(LAKE_BUCKET, "lake", endpoint_url="http://127.0.0.1:8333")._io():
            raise OSError("When uploading part for key 'lake/t/s/bronze/dm.parquet': AWS Error NETWORK_CONNECTION "
                          "during UploadPart operation: curlCode: 7, Couldn't connect to server")
    except ConnectionError as exc:
        error = exc
    outage = outage_of(_raised(RuntimeError("bronze publish failed"), error), STACK_LAKE_SETTINGS)
    assert (outage.service, outage.address) == (S3_SERVICE, "127.0.0.1:8333")
    assert outage.cause.startswith(f"could not connect to the S3 lake at 127.0.0.1:8333 (bucket {LAKE_BUCKET})")


def test_an_outage_is_recognized_in_what_dagster_keeps_of_a_step_error() -> None:
    from dagster._utils.error import serializable_error_info_from_exc_info

    try:
        raise _raised(RuntimeError("lineage append failed"),
                      ConnectionError('Could not connect to the endpoint URL: "http://127.0.0.1:8333/b/k"'))
    except RuntimeError:
        info = serializable_error_info_from_exc_info(sys.exc_info())
    assert outage_of(info, STACK_SETTINGS).address == "127.0.0.1:8333"


@pytest.mark.parametrize("error", [
    ValueError("column AGE: 3 values out of range"),  # the run's own failure
    ConnectionRefusedError("connection to 10.0.0.9:9000 refused"),  # not a service these settings use
    OSError('connection to server at "127.0.0.1", port 5433 failed: Connection refused'),  # ... nor on the embedded default
])
def test_other_errors_are_not_outages(error) -> None:
    settings = STACK_SETTINGS if "5433" not in str(error) else Settings()
    assert outage_of(error, settings) is None


@pytest.fixture(scope="module")
def own_stack() -> Iterator[Stack]:
    """A stack of this module's own: its tests kill services."""
    with running_stack("trialsynth-outage-") as started:
        yield started


def _kill(stack: Stack, service: str) -> None:
    if service == "postgres":
        stop_postgres(stack.state / "postgres", mode="immediate")  # as a crash: clients cut at once
    else:
        stop_seaweedfs(stack.state / "seaweedfs")


def _kill_after_step(stack: Stack, service: str, tenant: str, step: str) -> Callable[[], None]:
    """Start a thread that kills ``service`` as soon as ``step`` of the tenant's run succeeded (read from
    Dagster's Postgres storage); returns a function that waits for the kill."""
    pg = stack.postgres
    killed = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                                      dbname="dagster", connect_timeout=5) as conn, conn.cursor() as cur:
                    cur.execute("select count(*) from event_logs e join run_tags t on t.run_id = e.run_id "
                                "where t.key = 'trialsynth/tenant' and t.value = %s and e.step_key = %s "
                                "and e.dagster_event_type = 'STEP_SUCCESS'", (tenant, step))
                    if cur.fetchone()[0]:
                        break
            except psycopg2.Error:  # the storage's tables are not there before the first run
                pass
            time.sleep(0.1)
        _kill(stack, service)
        killed.set()

    threading.Thread(target=watch, daemon=True).start()
    return lambda: killed.wait(60)


def _bronze_is_whole_or_absent(store: LakeStore, tenant: str, after_outage: bool = False) -> None:
    """Read through the lake store, as every reader does: the study's bronze is absent, or whole and
    readable, or (only right after the outage) refused as a publish that did not complete."""
    keys = store.list(f"{tenant}/{STUDY}/bronze", "*.parquet")
    if not keys:
        return
    try:
        frames = {key.rsplit("/", 1)[-1].removesuffix(".parquet"): store.read_parquet(key) for key in keys}
    except IncompletePublishError as exc:
        assert after_outage, exc
        assert f"partition {tenant}|{STUDY}" in str(exc) and "rerun" in str(exc)
        return
    assert set(frames) >= set(DOMAINS), sorted(frames)
    assert frames["dm"].height == SUBJECTS


@pytest.mark.slow  # a stack of its own and two runs per service: ~1-2 min each on 2 busy cores
@pytest.mark.parametrize(("service", "expected"), [
    ("postgres", "PostgreSQL (Dagster storage, model registry)"),
    ("seaweedfs", S3_SERVICE),
])
def test_service_killed_mid_run(own_stack, settings, tmp_path, monkeypatch, capfd, service, expected) -> None:
    tenant = f"outage{service}"
    for name, value in own_stack.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRIALSYNTH_STUDIES_DIR", str(fast_study_config(tmp_path / "studies", STUDY)))
    get_settings.cache_clear()
    s = get_settings()
    write_drop(generate_study(tenant, STUDY, n_subjects=SUBJECTS, n_sites=2, seed=5), s.landing_dir, tenant, STUDY)
    address = {"postgres": f"{own_stack.postgres.host}:{own_stack.postgres.port}",
               "seaweedfs": own_stack.seaweedfs.endpoint.removeprefix("http://")}[service]
    logs = tmp_path / "logs"

    wait_for_kill = _kill_after_step(own_stack, service, tenant, "raw_drop")
    lines: list[str] = []
    outcomes = process_landing_zone(log=lines.append, tenant=tenant, assets=ASSETS, run_log_dir=logs)
    assert wait_for_kill(), "the service was not killed"
    lines += outcome_lines(outcomes)

    # The run failed, and says which service went away, where, and what happens next: in one line.
    (outcome,) = outcomes
    assert outcome.status == "FAILURE"
    named = [line for line in outcome.summary if f"{expected} at {address} stopped answering" in line]
    assert len(named) == 1 and "runs again at the next `trialsynth ingest`" in named[0], outcome.summary
    if service == "postgres":  # Dagster itself could not go on: the run is reported as interrupted
        assert outcome.state == INTERRUPTED
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err + "\n".join(lines)

    # The service comes back on its port (what `make stack-up` does): nothing half-written is visible.
    restarted = start_all(own_stack.state, log=lambda line: None)
    assert (restarted.postgres.port, restarted.seaweedfs.endpoint) == (own_stack.postgres.port, own_stack.seaweedfs.endpoint)
    study_dir = s.study_dir(tenant, STUDY)
    _bronze_is_whole_or_absent(open_lake_store(s), tenant, after_outage=True)

    # Running again completes the drop; the interrupted run is FAILED in the storage, not left in progress.
    again = process_landing_zone(log=lines.append, tenant=tenant, assets=ASSETS, run_log_dir=logs)
    assert [o.status for o in again] == ["SUCCESS"], outcome_lines(again)
    (record,) = DropRegistry(s.lake_dir, tenant, STUDY).records()
    assert record.state == INGESTED and record.attempt == 1
    instance = dg.DagsterInstance.get()
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"trialsynth/tenant": tenant}))
    assert sorted(r.status.value for r in runs) == ["FAILURE", "SUCCESS"]
    _bronze_is_whole_or_absent(open_lake_store(s), tenant)
    assert not [p for p in study_dir.rglob("*") if p.name.endswith((".next", ".prev", ".tmp"))]
    assert not list(study_dir.glob("_interrupted/*")), "the outage's note was settled"
    report = run_verification(s, open_store(s), partitions=[(tenant, STUDY)], write_status=False)
    assert report.ok, report.describe()
