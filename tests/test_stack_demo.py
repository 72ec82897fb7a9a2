"""`make demo-stack`: the demo command on the scale-out stack, by settings only (the stack's
trialsynth.yaml through ``TRIALSYNTH_CONFIG`` and the secrets of ``stack.env``), then everything read
back from where the stack keeps it: the run and its materializations from Postgres, the model from
the Postgres registry (row-level security: only its tenant sees it), the raw zone from its Object Lock
bucket and bronze and analytics files from the lake bucket in SeaweedFS (the local data folder holds none
of them), the marts from
ClickHouse (dbt-clickhouse read the partition's files from the bucket with s3()).

The landing zone (where sponsors drop files) and local state (drop registries) stay on local disk."""

from __future__ import annotations

import json
import os

import boto3
import clickhouse_connect
import psycopg2
import pytest

from tests.conftest import fast_study_config
from trialsynth.cli import main
from trialsynth.registry import ModelRegistry
from trialsynth.settings import get_settings
from trialsynth.storage import open_lake_store
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
    assert (settings.dagster_storage, settings.warehouse.target, settings.lineage.store, settings.lake.store) == (
        "postgres", "clickhouse", "s3", "s3")
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
        # in the bucket, encrypted with the tenant's key: its stored and plaintext sha256 verified on load
        assert model.artifact_uri.startswith(f"lake:{TENANT}/") and model.artifact_key_id.startswith(f"{TENANT}/v")
        ModelRegistry().load_model(model.id)
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
    # mart_lineage_status holds what the nightly lineage verification found: no row before it first runs
    assert [m for m in sorted(models - {"mart_lineage_status"}) if rows(m) == 0] == []
    client.close()
    assert not settings.warehouse_path.exists()

    # The lake: the raw zone, bronze, quarantine and analytics files are objects in the lake bucket ...
    s3 = boto3.session.Session().client("s3", endpoint_url=settings.lake.s3_endpoint_url, region_name="us-east-1",
                                        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                                        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    def keys(bucket: str, prefix: str) -> set[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")}

    # the raw zone in its own bucket, write-once: every object under COMPLIANCE retention
    assert settings.lake.raw_bucket != settings.lake.s3_bucket and settings.lake.raw_retention_days > 0
    raw = keys(settings.lake.raw_bucket, f"raw/{TENANT}/{STUDY}/")
    assert any(k.endswith("/v1/_manifest.json") for k in raw) and any(k.endswith("/v1/dm.csv") for k in raw)
    assert {s3.head_object(Bucket=settings.lake.raw_bucket, Key=k).get("ObjectLockMode") for k in raw
            if not k.endswith("_PUBLISHING.json")} == {"COMPLIANCE"}  # (publish manifests: kept, completed)
    assert open_lake_store(settings, "raw").lock_problems(TENANT) == []
    lake = {k.removeprefix(f"lake/{TENANT}/{STUDY}/") for k in keys(settings.lake.s3_bucket, f"lake/{TENANT}/{STUDY}/")}
    assert not [k for k in lake if k.endswith("_PUBLISHING.json")], "every publish completed"
    assert {"raw_pointer.json", "bronze/dm.parquet", "bronze/_domains.parquet", "study_data/matrix.parquet",
            "missingness/profile.parquet", "imputation/benchmark.parquet", "imputation/imputed_dataset.parquet",
            "synthesis/train.parquet", "synthesis/synthetic_cohort.parquet", "design/power_curves.parquet",
            "rbqm/km_discontinuation.parquet"} <= lake
    assert any(k.startswith("evidence/") and k.endswith("/metrics.parquet") for k in lake)
    # (the demo's drop has no rejected rows: tests/test_lake_store_ingest.py puts a quarantine in a bucket)
    # ... and the local data folder holds none of them (the landing zone keeps the sponsor's drop)
    assert not [p for p in settings.raw_dir.rglob("*") if p.is_file()]
    local = [p.relative_to(settings.lake_dir).as_posix() for p in settings.lake_dir.rglob("*") if p.is_file()]
    assert not [p for p in local if p.endswith(".parquet") or p.endswith("raw_pointer.json")
                or "/quarantine/" in p or "/bronze/" in p], local
