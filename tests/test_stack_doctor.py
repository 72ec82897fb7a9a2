"""`trialsynth doctor`: a line per configured service on the embedded default and on the running
stack; a wrong setting (unknown target, unreachable host, wrong password, lineage bucket without
Object Lock) fails there, naming the service, with exit status 1."""

from __future__ import annotations

import pytest

from trialsynth.cli import main
from trialsynth.settings import get_settings


def _doctor(capsys) -> tuple[int, dict[str, str]]:
    get_settings.cache_clear()
    code = main(["doctor"])
    get_settings.cache_clear()
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines()[1:-1]:
        status, rest = line[:4].strip(), line[6:]
        lines[rest[:16].strip()] = f"{status} {rest[16:].strip()}"
    return code, lines


def test_embedded_default_is_healthy(settings, capsys) -> None:
    code, lines = _doctor(capsys)
    assert code == 0, lines
    assert lines["dagster storage"].startswith(f"ok SQLite in {settings.dagster_home_path}")
    assert lines["warehouse"].startswith(f"ok DuckDB {settings.warehouse_path}")
    assert lines["lineage store"].startswith(f"ok local files in {settings.lake_dir}")
    assert lines["lake"].startswith(f"ok local folders {settings.lake_dir}") and str(settings.raw_dir) in lines["lake"]
    assert lines["model registry"].startswith("ok sqlite:///")


@pytest.fixture
def on_stack(stack, settings, monkeypatch):
    for name, value in stack.environment().items():
        monkeypatch.setenv(name, value)
    return stack


def test_running_stack_is_healthy(on_stack, capsys) -> None:
    code, lines = _doctor(capsys)
    assert code == 0, lines
    assert lines["dagster storage"].startswith(f"ok postgres trialsynth@127.0.0.1:{on_stack.postgres.port}/dagster")
    assert lines["warehouse"].startswith("ok ClickHouse 26.") and f":{on_stack.clickhouse.port}" in lines["warehouse"]
    assert "Object Lock enabled" in lines["lineage store"]
    s3 = on_stack.seaweedfs.endpoint
    assert lines["lake"] == (f"ok s3://trialsynth-lake at {s3}: probe written, read back and deleted under lake/_doctor/; "
                             "raw zone in s3://trialsynth-raw, Object Lock enabled, COMPLIANCE retention 2555 days per object")
    # the probe is gone again
    listed = on_stack.seaweedfs.client().list_objects_v2(Bucket="trialsynth-lake", Prefix="lake/_doctor/")
    assert not [o for o in listed.get("Contents", []) if not o["Key"].endswith("/")]
    # the registry is used through the non-owner role of its row-level security (trialsynth.tenancy)
    assert lines["model registry"] == f"ok postgresql+psycopg2://trialsynth_app@127.0.0.1:{on_stack.postgres.port}/registry (connected)"


@pytest.mark.parametrize(("env", "service", "message"), [
    ({"TRIALSYNTH_LINEAGE__S3_BUCKET": "trialsynth-lake"}, "lineage store", "has no Object Lock"),
    ({"TRIALSYNTH_LINEAGE__S3_BUCKET": "no-such-bucket"}, "lineage store", "bucket not reachable"),
    ({"TRIALSYNTH_LAKE__S3_BUCKET": "no-such-lake"}, "lake", "s3://no-such-lake at http://127.0.0.1:"),
    ({"TRIALSYNTH_LAKE__S3_RAW_BUCKET": "trialsynth-lake"}, "lake", "the raw zone (lake.raw_retention_days > 0) needs"),
    ({"TRIALSYNTH_CLICKHOUSE_PASSWORD": "wrong"}, "warehouse", "AUTHENTICATION_FAILED"),
    ({"TRIALSYNTH_WAREHOUSE__CLICKHOUSE_PORT": "1"}, "warehouse", "/ping failed"),
    ({"TRIALSYNTH_POSTGRES__HOST": "pg.invalid"}, "dagster storage", "cannot connect"),
    ({"TRIALSYNTH_PG_PASSWORD": ""}, "dagster storage", "TRIALSYNTH_PG_PASSWORD is not set"),
    ({"TRIALSYNTH_REGISTRY_URL": "postgresql+psycopg2://trialsynth@127.0.0.1:1/registry"}, "model registry", "cannot connect"),
])
def test_wrong_setting_fails_naming_the_service(on_stack, monkeypatch, capsys, env, service, message) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, lines = _doctor(capsys)
    assert code == 1
    assert lines[service].startswith("FAIL") and message in lines[service], lines[service]
    assert all(line.startswith("ok") for name, line in lines.items() if name != service), list(lines.items())


def test_unknown_target_fails_before_any_check(settings, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TRIALSYNTH_WAREHOUSE__TARGET", "oracle")
    get_settings.cache_clear()
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  settings" in out and "warehouse.target" in out and "oracle" in out
