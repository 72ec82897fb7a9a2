"""The lineage status table in the warehouse: the status files the verification writes
(``<lake>/<tenant>/<study>/audit/lineage_status.parquet``) -> source analytics.lineage_status ->
stg_lineage_status (ephemeral) -> mart_lineage_status, built by dbt on DuckDB and on ClickHouse (the
chDB endpoint) with the same rows, so a dashboard can show "lineage verified at <time>"."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.lineage_support import fill, raw_write
from tests.test_dbt_project import query
from tests.test_stack_dbt_clickhouse import clickhouse_client, clickhouse_dbt_env, dbt, failures
from trialsynth.lineage import FileSigner, KeyRing, LocalLineageStore, verify_store, write_status_tables

COLUMNS = "tenant_id, study_id, status, headline, manifests, problems, first_broken_link, verified_date"
SELECT = ["+mart_lineage_status"]


def _statuses(tmp_path: Path, lake: Path) -> tuple[str, str]:
    """Two chains verified for real, one of them tampered with; their status files in ``lake``."""
    store = LocalLineageStore(tmp_path / "chains", FileSigner(tmp_path / "k.pem"))
    fill(store, "acme", "S1", 3, tmp_path / "out")
    records = fill(store, "beta", "S2", 2, tmp_path / "out")
    key = f"lineage/beta/S2/{1:012d}-{records[1]['hash']}.json"
    raw_write(store, key, store.backend.get(key).data.replace(b'"i":1', b'"i":5'))
    report = verify_store(store, KeyRing({store.signer.key_id}))
    write_status_tables(report, lake)
    return report.verified_at.isoformat(timespec="seconds"), report.first_failure.describe()


@pytest.mark.parametrize("target", ["duckdb", "clickhouse"])
def test_mart_lineage_status_says_when_lineage_was_verified(target, request, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    when, broken = _statuses(tmp_path, lake)
    env = {"TRIALSYNTH_LAKE_DIR": str(lake), "TRIALSYNTH_WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    endpoint, database = None, f"t_{uuid.uuid4().hex[:10]}"
    if target == "clickhouse":
        endpoint = request.getfixturevalue("clickhouse_endpoint")
        env = {**clickhouse_dbt_env(endpoint, database), **env}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sql = f"select {COLUMNS} from mart_lineage_status order by tenant_id"
    try:
        result = dbt(["build", "--select", *SELECT], target, tmp_path)  # models and their data tests
        assert result.success, failures(result) or result.exception
        rows = (clickhouse_client(endpoint, database).query(sql).result_rows if endpoint
                else query(tmp_path / "warehouse.duckdb", sql))
    finally:
        if endpoint is not None:
            clickhouse_client(endpoint).command(f"DROP DATABASE IF EXISTS {database}")
    (acme, beta) = [tuple(r) for r in rows]
    assert acme[:7] == ("acme", "S1", "verified", f"lineage verified at {when}", 3, 0, None)
    assert beta[:7] == ("beta", "S2", "broken", f"lineage BROKEN (verified at {when}): {broken}", 2, 1, broken)
    assert broken.startswith("partition beta|S2, sequence 1, asset 'asset1'")
    assert str(acme[7]) == when[:10]
