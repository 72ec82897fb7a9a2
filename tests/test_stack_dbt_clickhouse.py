"""The ClickHouse settings reach dbt: with `warehouse.target: clickhouse` settings pointing at the
stack's endpoint, the env that assets/warehouse.py gives dbt makes dbt_project's `clickhouse`
profile connect there, as that user, with the password from the env var the settings name. The slow
test builds every model and data test of dbt_project in the endpoint and rebuilds one partition."""

from __future__ import annotations

import json

import clickhouse_connect
import pytest
from dbt.cli.main import dbtRunner

from tests.test_dbt_project import ACME, DBT_DIR, write_fixture_lake
from trialsynth.settings import get_settings


@pytest.fixture
def clickhouse_settings(stack, settings, monkeypatch):
    for name, value in stack.environment().items():
        monkeypatch.setenv(name, value)
    # The password under a non-default env var name, which the settings name.
    monkeypatch.delenv("TRIALSYNTH_CLICKHOUSE_PASSWORD")
    monkeypatch.setenv("CH_SECRET_FOR_TEST", stack.clickhouse.password)
    monkeypatch.setenv("TRIALSYNTH_WAREHOUSE__CLICKHOUSE_PASSWORD_ENV", "CH_SECRET_FOR_TEST")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _dbt_debug(monkeypatch) -> bool:
    from assets.warehouse import dbt_environment  # imported late: it parses the dbt project

    for name, value in dbt_environment().items():
        monkeypatch.setenv(name, value)
    s = get_settings()
    project = str(s.dbt_project_path)
    return dbtRunner().invoke(["debug", "--target", "clickhouse", "--project-dir", project, "--profiles-dir", project,
                               "--quiet"]).success


def test_dbt_connects_where_the_settings_say(clickhouse_settings, stack, monkeypatch) -> None:
    assert clickhouse_settings.warehouse.clickhouse_port == stack.clickhouse.port != 8123
    assert _dbt_debug(monkeypatch)


def test_dbt_fails_without_the_named_password(clickhouse_settings, monkeypatch) -> None:
    monkeypatch.setenv("CH_SECRET_FOR_TEST", "wrong")
    assert not _dbt_debug(monkeypatch)


@pytest.mark.slow
def test_dbt_project_builds_in_clickhouse_endpoint(clickhouse_settings, stack, monkeypatch, tmp_path) -> None:
    """Every model and data test of dbt_project on the ClickHouse target (the fixture lake of
    test_dbt_project.py), then a partition rebuild that leaves every table's rows as they were."""
    from assets.warehouse import dbt_environment  # imported late: it parses the dbt project

    write_fixture_lake(tmp_path / "lake")
    for name, value in {**dbt_environment(), "TRIALSYNTH_LAKE_DIR": str(tmp_path / "lake")}.items():
        monkeypatch.setenv(name, value)
    args = ["--target", "clickhouse", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
            "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"), "--quiet"]
    client = clickhouse_connect.get_client(host=stack.clickhouse.host, port=stack.clickhouse.port,
                                           password=stack.clickhouse.password, compress=False)

    def table_rows() -> dict[str, int]:
        tables = client.query("SELECT name FROM system.tables WHERE database = 'trialsynth' AND engine LIKE '%MergeTree'")
        return {t: client.command(f"SELECT count() FROM trialsynth.{t}") for (t,) in tables.result_rows}

    first = dbtRunner().invoke(["build", *args])
    assert first.success, [(r.node.name, str(r.status), r.message) for r in first.result or [] if str(r.status) not in ("success", "pass")]
    assert sum(r.node.resource_type == "model" for r in first.result) > 25
    built = table_rows()
    assert built["fact_observation"] > 0 and built["dim_subject"] > 0
    again = dbtRunner().invoke(["build", "--vars", json.dumps({"tenant": ACME[0], "study": ACME[1]}), *args])
    assert again.success
    assert table_rows() == built
