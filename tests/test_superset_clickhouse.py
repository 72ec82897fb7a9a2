"""Superset on ClickHouse (`warehouse.target: clickhouse`), without starting Superset: the bundle's
database is clickhouse-connect's SQLAlchemy dialect with the password beside the bundle (never in
it), and the serving views published in ClickHouse hold what the DuckDB serving file holds for the
same marts. The dashboards themselves render on both targets in tests/test_superset_dashboards.py."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import clickhouse_connect
import duckdb
import pytest
import yaml

from infra.superset.bundle import DATABASE_NAME, bundle_passwords, bundle_zip
from infra.superset.publish import publish
from infra.superset.publish_clickhouse import publish_clickhouse
from infra.superset.sample_marts import build_sample_warehouse, load_into_clickhouse
from infra.superset.spec import AVAILABILITY_DATASET, SPEC_PATH, load_spec
from infra.superset.warehouse import ENV_VAR, PASSWORD_MASK, ServedWarehouse, current

SPEC = load_spec()
SECRET = "ch-secret-for-the-bundle-test"


def test_the_clickhouse_bundle_names_the_serving_database_and_masks_the_password(monkeypatch) -> None:
    served = ServedWarehouse(target="clickhouse", clickhouse_host="ch.internal", clickhouse_port=8443,
                             clickhouse_user="superset", clickhouse_database="trialsynth",
                             clickhouse_password_env="CH_PW_TEST", clickhouse_secure=True)
    monkeypatch.setenv("CH_PW_TEST", SECRET)
    data = bundle_zip(SPEC, served)
    assert SECRET.encode() not in data
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = {name.split("/", 1)[1]: yaml.safe_load(zf.read(name)) for name in zf.namelist()}
    uri = files[f"databases/{DATABASE_NAME}.yaml"]["sqlalchemy_uri"]
    assert uri == f"clickhousedb://superset:{PASSWORD_MASK}@ch.internal:8443/trialsynth_serving?compress=false&secure=true"
    assert {f["schema"] for n, f in files.items() if n.startswith("datasets/")} == {"trialsynth_serving"}
    assert bundle_passwords(served) == {f"databases/{DATABASE_NAME}.yaml": SECRET}
    # the settings travel to Superset's venv as JSON in one env var, without the password
    monkeypatch.setenv(ENV_VAR, served.to_json())
    assert current() == served and SECRET not in served.to_json()


def _rows(con_or_client, sql: str) -> list[tuple]:
    if isinstance(con_or_client, duckdb.DuckDBPyConnection):
        return sorted(con_or_client.execute(sql).fetchall(), key=repr)
    return sorted((tuple(r) for r in con_or_client.query(sql).result_rows), key=repr)


def test_clickhouse_serving_views_match_the_duckdb_serving_file(clickhouse_endpoint, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    build_sample_warehouse(warehouse, n_subjects=100, omit=("mart_imputation_delta", "mart_little_mcar"))
    report = publish(warehouse, tmp_path / "marts.duckdb")
    served = ServedWarehouse(target="clickhouse", clickhouse_host=clickhouse_endpoint.host,
                             clickhouse_port=clickhouse_endpoint.port, clickhouse_user=clickhouse_endpoint.user,
                             clickhouse_database=f"serving_test_{uuid.uuid4().hex[:8]}")
    client = clickhouse_connect.get_client(host=clickhouse_endpoint.host, port=clickhouse_endpoint.port,
                                           username=clickhouse_endpoint.user, password=clickhouse_endpoint.password,
                                           compress=False)
    try:
        load_into_clickhouse(warehouse, client, served.clickhouse_database)
        ch_report = publish_clickhouse(client, served)
        assert sorted(ch_report.placeholders) == sorted(report.placeholders) == ["mart_imputation_delta", "mart_little_mcar"]
        db = served.serving_database
        with duckdb.connect(str(tmp_path / "marts.duckdb"), read_only=True) as con:
            for table in ("serving_study_sites", AVAILABILITY_DATASET, *SPEC.datasets):
                columns = list(SPEC.datasets[table].all_columns) if table in SPEC.datasets else ["*"]
                select = ", ".join(columns)
                duck = _rows(con, f"SELECT {select} FROM main.{table}")
                ch = _rows(client, f"SELECT {select} FROM {db}.{table}")
                assert len(ch) == len(duck), table
                assert ch == duck, table
            # (display columns included above) and the saved metrics read alike on both engines
            for name, ds in SPEC.datasets.items():
                if ds.metrics:
                    select = ", ".join(f"round({e}, 9) AS m{i}" for i, e in enumerate(ds.metrics.values()))
                    query = f"SELECT tenant_id, {select} FROM {{}}.{name} GROUP BY tenant_id"
                    assert _rows(client, query.format(db)) == _rows(con, query.format("main")), name
            availability = _rows(con, f"SELECT DISTINCT status FROM {AVAILABILITY_DATASET}")
        assert availability == [("available",), ("not available for this study",)]
        # a mart dbt builds later is served, and counted available, once published again
        status = (f"SELECT tenant_id, status FROM {db}.{AVAILABILITY_DATASET} "
                  "WHERE source = 'mart_little_mcar' ORDER BY tenant_id")
        assert _rows(client, status) == [("acme", "not available for this study"), ("cdisc", "not available for this study")]
        client.command(f"CREATE TABLE {served.clickhouse_database}.mart_little_mcar ENGINE = MergeTree ORDER BY tuple() "
                       "AS SELECT 'acme' AS tenant_id, 'ACME-001' AS study_id, 'VS' AS variable_group")
        assert "mart_little_mcar" not in publish_clickhouse(client, served).placeholders
        assert _rows(client, f"SELECT study_id, variable_group, statistic FROM {db}.mart_little_mcar") == [
            ("ACME-001", "VS", None)]
        assert _rows(client, status) == [("acme", "available"), ("cdisc", "not available for this study")]
    finally:
        client.command(f"DROP DATABASE IF EXISTS {served.clickhouse_database}")
        client.command(f"DROP DATABASE IF EXISTS {served.serving_database}")


def test_an_unknown_spec_type_is_refused_by_name() -> None:
    from infra.superset.publish_clickhouse import clickhouse_type

    assert clickhouse_type("double") == "Nullable(Float64)"
    with pytest.raises(ValueError, match="INTERVAL"):
        clickhouse_type("INTERVAL")


def test_a_metric_shadowing_a_column_another_metric_reads_is_refused(tmp_path: Path) -> None:
    """Superset would select SUM(n_serious) AS n_serious beside 100 * SUM(n_serious) / ...: ClickHouse
    reads the alias in the second one (an aggregate in an aggregate), DuckDB the column."""
    raw = yaml.safe_load(SPEC_PATH.read_text())
    raw["datasets"]["mart_safety"]["metrics"]["n_serious"] = "SUM(n_serious)"
    chart = next(c for c in raw["dashboards"]["safety"]["charts"] if "serious_share" in c.get("metrics", []))
    chart["metrics"] = ["n_serious", "serious_share"]
    bad = tmp_path / "dashboards.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="metric 'n_serious' is named like a column"):
        load_spec(bad)
