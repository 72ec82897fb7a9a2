"""`make demo-stack`: the demo command on the scale-out stack, by settings only (the stack's
trialsynth.yaml through ``TRIALSYNTH_CONFIG`` and the secrets of ``stack.env``), then everything read
back from where the stack keeps it: the run and its materializations from Postgres, the model from
the Postgres registry (row-level security: only its tenant sees it), the marts from ClickHouse.

The lake (landing, raw zone, bronze, analytics files) is still on local disk on the stack."""

from __future__ import annotations

import json
import os

import clickhouse_connect
import psycopg2
import pytest

from tests.conftest import fast_study_config
from trialsynth.cli import main
from trialsynth.registry import ModelRegistry, artifact_sha256
from trialsynth.settings import get_settings
from trialsynth.tenancy import tenant_scope

# A tenant no other test uses on the shared stack; the demo's study id, so its design (data/designs) makes power curves.
TENANT, STUDY, SUBJECTS, SITES = "stackdemo", "ACME-001", 60, 3


@pytest.fixture
def on_stack(stack, settings, tmp_path, monkeypatch):
    """What `source .stack/stack.env` gives a shell (data and DAGSTER_HOME stay the test's own)."""
    for name, value in stack.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRIALSYNTH_STUDIES_DIR", str(fast_study_config(tmp_path / "studies", STUDY)))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _postgres(settings):
    pg = settings.postgres
    return psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=os.environ[pg.password_env], dbname=pg.db)


@pytest.mark.slow  # the whole study pipeline: ~3-5 min on 2 busy cores
def test_demo_runs_on_the_stack_by_settings_only(on_stack) -> None:
    settings = on_stack
    assert (settings.dagster_storage, settings.warehouse.target, settings.lineage.store) == ("postgres", "clickhouse", "s3")
    assert main(["demo", "--tenant", TENANT, "--study", STUDY, "--subjects", str(SUBJECTS), "--sites", str(SITES),
                 "--no-cdisc"]) == 0

    # Dagster: the run and its materializations are rows in Postgres, nothing in SQLite.
    with _postgres(settings) as conn, conn.cursor() as cur:
        cur.execute("select r.run_id, r.status from runs r join run_tags t on t.run_id = r.run_id "
                    "where t.key = 'trialsynth/tenant' and t.value = %s", (TENANT,))
        ((run_id, status),) = cur.fetchall()
        cur.execute("select asset_key, partition from event_logs where run_id = %s "
                    "and dagster_event_type = 'ASSET_MATERIALIZATION'", (run_id,))
        materialized = cur.fetchall()
    assert status == "SUCCESS"
    assert {partition for _, partition in materialized} == {f"{TENANT}|{STUDY}"}
    assets = {tuple(json.loads(key)) for key, _ in materialized}
    assert {("raw_drop",), ("bronze", "dm"), ("synthesizer_model",), ("dim_subject",), ("mart_enrollment",)} <= assets
    assert not any(settings.dagster_home_path.glob("**/*.db")), "no SQLite Dagster storage"

    # The model registry: Postgres, the model visible to its tenant only, its artifact matching its hash.
    assert settings.registry_sqlalchemy_url.startswith("postgresql")
    with tenant_scope(TENANT):
        (model,) = ModelRegistry().list(kind="synthesizer")
    assert artifact_sha256(model.artifact_path) == model.artifact_sha256
    with tenant_scope("someoneelse"):
        assert model.id not in {m.id for m in ModelRegistry().list()}
    assert not (settings.lake_dir / "registry.sqlite").exists()

    # The marts: MergeTree tables in ClickHouse holding the study's rows; no DuckDB warehouse was made.
    wh = settings.warehouse
    client = clickhouse_connect.get_client(host=wh.clickhouse_host, port=wh.clickhouse_port, username=wh.clickhouse_user,
                                           password=os.environ[wh.clickhouse_password_env], compress=False)
    tables = dict(client.query("select name, engine from system.tables where database = {db:String}",
                               parameters={"db": wh.clickhouse_database}).result_rows)
    models = {key[0] for key in assets if key[0].startswith(("dim_", "fact_", "mart_"))}
    assert models and models <= set(tables) and {tables[m] for m in models} == {"MergeTree"}

    def rows(table: str) -> int:
        return client.command(f"select count() from `{wh.clickhouse_database}`.`{table}` "
                              "where tenant_id = {t:String} and study_id = {s:String}", parameters={"t": TENANT, "s": STUDY})

    assert rows("dim_subject") == SUBJECTS and rows("dim_site") == SITES
    assert [m for m in sorted(models) if rows(m) == 0] == []
    client.close()
    assert not settings.warehouse_path.exists()
