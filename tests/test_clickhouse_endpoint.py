"""The chDB ClickHouse endpoint (infra/clickhouse, a local stand-in) as the clients trialsynth uses see
it: clickhouse-connect (inserts and reads of DataFrames, binds, settings, errors) and dbt-clickhouse
(debug, MergeTree table, incremental, data tests), plus the raw HTTP details they rely on."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import clickhouse_connect
import pandas as pd
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from dbt.cli.main import dbtRunner, dbtRunnerResult


def _client(endpoint, compress: bool | str = False, password: str | None = None):
    return clickhouse_connect.get_client(host=endpoint.host, port=endpoint.port, username=endpoint.user,
                                         password=endpoint.password if password is None else password,
                                         compress=compress)


def _http(endpoint, query: str = "", body: bytes | None = None, headers: dict | None = None):
    """(status, body, headers) of one request with the endpoint's credentials."""
    url = endpoint.url + "/" + ("?" + urllib.parse.urlencode({"query": query}) if query else "")
    request = urllib.request.Request(url, data=body, headers={"X-ClickHouse-User": endpoint.user,
                                                              "X-ClickHouse-Key": endpoint.password, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


@pytest.mark.parametrize("compress", [False, "lz4"])
def test_dataframe_round_trip_through_clickhouse_connect(clickhouse_endpoint, compress) -> None:
    client = _client(clickhouse_endpoint, compress)
    database = f"cc_{compress or 'plain'}"
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(f"DROP TABLE IF EXISTS {database}.obs")
    client.command(f"CREATE TABLE {database}.obs (tenant_id String, subject String, value Nullable(Float64), "
                   "visit Date32) ENGINE = MergeTree ORDER BY (tenant_id, subject)")
    frame = pd.DataFrame({"tenant_id": ["acme", "acme", "beta"], "subject": ["s1", "s2", "s3"],
                          "value": [1.25, None, -3.5],
                          "visit": pd.to_datetime(["2024-01-02", "2024-02-03", "2024-03-04"]).date})
    client.insert_df("obs", frame, database=database)
    back = client.query_df(f"SELECT * FROM {database}.obs ORDER BY subject")
    assert back["subject"].tolist() == frame["subject"].tolist()
    assert back["value"].isna().tolist() == [False, True, False]
    assert back["value"].dropna().tolist() == [1.25, -3.5]
    assert [str(v)[:10] for v in back["visit"]] == ["2024-01-02", "2024-02-03", "2024-03-04"]
    counted = client.query(f"SELECT count() FROM {database}.obs WHERE tenant_id = {{t:String}}", parameters={"t": "acme"})
    assert counted.result_rows == [(2,)]
    # The client's database is used for unqualified names.
    scoped = clickhouse_connect.get_client(host=clickhouse_endpoint.host, port=clickhouse_endpoint.port,
                                           username="default", password=clickhouse_endpoint.password,
                                           database=database, compress=False)
    assert scoped.query("SELECT count() FROM obs").result_rows == [(3,)]


def test_settings_apply_to_one_request_only(clickhouse_endpoint) -> None:
    client = _client(clickhouse_endpoint)
    default = client.query("SELECT getSetting('max_block_size')").result_rows[0][0]
    assert client.query("SELECT getSetting('max_block_size')", settings={"max_block_size": 77}).result_rows == [(77,)]
    assert client.query("SELECT getSetting('max_block_size')").result_rows == [(default,)]


def test_errors_carry_clickhouse_code_and_message(clickhouse_endpoint) -> None:
    with pytest.raises(DatabaseError, match=r"Code: 81\. DB::Exception: Database no_such_db does not exist.*UNKNOWN_DATABASE"):
        _client(clickhouse_endpoint).query("SELECT * FROM no_such_db.no_such_table")
    status, body, headers = _http(clickhouse_endpoint, "SELEC 1")
    assert status >= 500
    assert headers["X-ClickHouse-Exception-Code"] == "62"
    assert body.startswith(b"Code: 62. DB::Exception: Syntax error")


def test_wrong_password_is_refused(clickhouse_endpoint) -> None:
    with pytest.raises(DatabaseError, match="516"):
        _client(clickhouse_endpoint, password="not-the-password")


def test_ping_chunked_insert_and_formats(clickhouse_endpoint) -> None:
    assert _http(clickhouse_endpoint, headers={"X-ClickHouse-Key": ""})[1] == b"Ok.\n"
    with urllib.request.urlopen(clickhouse_endpoint.url + "/ping", timeout=10) as response:
        assert response.read() == b"Ok.\n"
    _http(clickhouse_endpoint, "CREATE DATABASE IF NOT EXISTS raw_http")
    _http(clickhouse_endpoint, "CREATE OR REPLACE TABLE raw_http.t (k String, n Int64) ENGINE = MergeTree ORDER BY k")
    rows = iter([b"INSERT INTO raw_http.t (k, n) FORMAT CSV\n", b'"a",1\n', b'"b",2\n'])  # a generator body is sent chunked
    status, _, _ = _http(clickhouse_endpoint, body=rows, headers={"Transfer-Encoding": "chunked"})
    assert status == 200
    # The word FORMAT inside inline rows is data, not the start of a data block.
    assert _http(clickhouse_endpoint, body=b"INSERT INTO raw_http.t VALUES ('c FORMAT CSV', 3)")[0] == 200
    # The statement in the URL, the rows in the body (as `curl --data-binary @rows.csv` sends them).
    assert _http(clickhouse_endpoint, "INSERT INTO raw_http.t FORMAT CSV", body=b'"d",4\n')[0] == 200
    assert _http(clickhouse_endpoint, "INSERT INTO raw_http.t VALUES", body=b"('e', 5)")[0] == 200
    status, body, headers = _http(clickhouse_endpoint, "SELECT k, n FROM raw_http.t ORDER BY k FORMAT JSONEachRow")
    assert body.splitlines() == [b'{"k":"a","n":1}', b'{"k":"b","n":2}', b'{"k":"c FORMAT CSV","n":3}',
                                 b'{"k":"d","n":4}', b'{"k":"e","n":5}']
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"


PROBE_MODELS = {
    "dbt_project.yml": "name: probe\nversion: '1.0'\nprofile: probe\n",
    "models/src.sql": "{{ config(materialized='table', engine='MergeTree()', order_by='(tenant_id, n)') }}\n"
                      "select 'acme' as tenant_id, number as n, number * 1.5 as v from numbers({{ var('rows', 5) }})\n",
    "models/inc.sql": "{{ config(materialized='incremental', engine='MergeTree()', order_by='(tenant_id, n)',\n"
                      "           unique_key='n', incremental_strategy='delete+insert') }}\n"
                      "select tenant_id, n, v from {{ ref('src') }}\n"
                      "{% if is_incremental() %} where n >= (select max(n) from {{ this }}) {% endif %}\n",
    "models/schema.yml": "version: 2\nmodels:\n  - name: inc\n    columns:\n      - name: n\n"
                         "        data_tests: [unique, not_null]\n",
    "tests/at_most_max_n.sql": "select * from {{ ref('inc') }} where n > {{ var('max_n', 1000) }}\n",
}


def _dbt(project: Path, *args: str) -> dbtRunnerResult:
    return dbtRunner().invoke([*args, "--project-dir", str(project), "--profiles-dir", str(project), "--quiet"])


def test_dbt_clickhouse_builds_and_tests_models(clickhouse_endpoint, tmp_path, monkeypatch) -> None:
    for name, text in PROBE_MODELS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "profiles.yml").write_text(
        "probe:\n  target: ch\n  outputs:\n    ch:\n      type: clickhouse\n"
        f"      host: {clickhouse_endpoint.host}\n      port: {clickhouse_endpoint.port}\n"
        f"      user: {clickhouse_endpoint.user}\n      password: \"{{{{ env_var('PROBE_CH_PASSWORD') }}}}\"\n"
        "      schema: dbt_probe\n      compression: ''\n      use_lw_deletes: true\n      threads: 1\n")
    monkeypatch.setenv("PROBE_CH_PASSWORD", clickhouse_endpoint.password)
    assert _dbt(tmp_path, "debug").success
    first = _dbt(tmp_path, "build")
    assert first.success, first.exception
    second = _dbt(tmp_path, "build", "--vars", "{rows: 8}")
    assert second.success, second.exception
    client = _client(clickhouse_endpoint)
    # delete+insert replaced the overlapping row and added the new ones: 8 distinct rows, none twice.
    assert client.query("SELECT count(), uniqExact(n), max(n) FROM dbt_probe.inc").result_rows == [(8, 8, 7)]
    engine, sorting_key = client.query("SELECT engine, sorting_key FROM system.tables "
                                       "WHERE database = 'dbt_probe' AND name = 'src'").result_rows[0]
    assert (engine, sorting_key.replace(" ", "")) == ("MergeTree", "tenant_id,n")
    failing = _dbt(tmp_path, "test", "--vars", "{max_n: 3}")
    assert not failing.success
    outcomes = {r.node.name: (str(r.status), r.failures) for r in failing.result.results}
    assert outcomes["at_most_max_n"] == ("fail", 4)  # rows n = 4..7
    assert outcomes["unique_inc_n"] == ("pass", 0)
