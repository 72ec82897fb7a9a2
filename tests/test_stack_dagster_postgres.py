"""`dagster_storage: postgres` for real: the dagster.yaml trialsynth writes puts a run and its
materialization events in the stack's Postgres, where they are read back with plain SQL."""

from __future__ import annotations

import os

import dagster as dg
import psycopg2
import yaml

from trialsynth.dagster_home import ensure_dagster_home
from trialsynth.settings import Settings


@dg.asset
def tiny_counts() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


def test_run_and_materializations_land_in_postgres(stack, tmp_path, monkeypatch) -> None:
    for name, value in stack.environment().items():
        monkeypatch.setenv(name, value)
    settings = Settings(**{**yaml.safe_load(stack.config_path.read_text()), "dagster_home": tmp_path / "dagster_home"})
    home = ensure_dagster_home(settings)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        result = dg.materialize([tiny_counts], instance=instance)
    finally:
        instance.dispose()
    assert result.success
    pg = settings.postgres
    with psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=os.environ[pg.password_env],
                          dbname=pg.db) as conn, conn.cursor() as cur:
        cur.execute("select status from runs where run_id = %s", (result.run_id,))
        assert cur.fetchall() == [("SUCCESS",)]
        cur.execute("select asset_key from event_logs where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'",
                    (result.run_id,))
        assert [row[0] for row in cur.fetchall()] == ['["tiny_counts"]']
    assert not any(home.glob("**/*.db")), "no SQLite storage next to dagster.yaml"
