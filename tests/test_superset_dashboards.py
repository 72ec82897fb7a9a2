"""Superset end to end: `infra/superset/run_superset.sh` on a two-tenant warehouse, per-tenant
row-level security through the chart-data API, and every dashboard rendered in headless Chromium
(screenshots in test-artifacts/superset/<target>/) and checked for what analysts read: units, status
colours and words, names instead of codes, "not available for this study" instead of empty axes, no
<NULL>, friendly pages for viewers; cold and warm load per dashboard are measured there
(browser_check.json, rendered by infra/superset/load_report.py into benchmarks/results/superset.md).
Needs `.venv-superset` (infra/superset/install.sh) and Debian's chromium; 3-6 minutes per target on a
shared 2-core machine, most of it Superset's first-run metadata setup and the browser.

Both warehouse targets: the DuckDB serving file (embedded default) and, marked slow, ClickHouse
(`warehouse.target: clickhouse`: the same marts loaded into the chDB endpoint as dbt lays them out,
served as views and read through clickhouse-connect's SQLAlchemy dialect)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import requests

from infra.superset.load_report import GOAL_S, QUIET_CORES, machine_busy_s, tree_cpu_s
from infra.superset.provision import SupersetClient, load_rules
from infra.superset.sample_marts import build_sample_warehouse, load_into_clickhouse
from infra.superset.server import running_superset
from infra.superset.spec import ROOT, load_spec
from infra.superset.warehouse import ENV_VAR, ServedWarehouse

VENV = ROOT / ".venv-superset"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "superset"
PLACEHOLDER_MARTS = ("mart_imputation_delta", "mart_little_mcar")
DENIED_PAGES = ("/api/v1/security/roles/", "/sqllab/")  # admin-only: a viewer opening a link to them

if not (VENV / ".installed").exists():
    pytest.skip(f"{VENV} is absent: run infra/superset/install.sh (or `make superset`) to test Superset",
                allow_module_level=True)

SPEC = load_spec()


@dataclass
class Server:
    url: str
    home: Path
    counts: dict[str, dict[str, int]]
    target: str
    env: dict[str, str]  # what run_superset.sh was started with beyond the data dir

    def client(self, user: str) -> SupersetClient:
        return SupersetClient(self.url, user, (self.home / f"{user}_password").read_text().strip())


@pytest.fixture(scope="session", params=["duckdb", pytest.param("clickhouse", marks=pytest.mark.slow)])
def superset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp(f"superset_{request.param}")
    warehouse = base / "data" / "warehouse" / "trialsynth.duckdb"
    counts = build_sample_warehouse(warehouse, n_subjects=150, omit=PLACEHOLDER_MARTS)
    env: dict[str, str] = {}
    if request.param == "clickhouse":
        endpoint = request.getfixturevalue("clickhouse_endpoint")
        served = ServedWarehouse(target="clickhouse", clickhouse_host=endpoint.host, clickhouse_port=endpoint.port,
                                 clickhouse_user=endpoint.user, clickhouse_database=f"superset_{uuid.uuid4().hex[:8]}",
                                 clickhouse_password_env="SUPERSET_TEST_CLICKHOUSE_PASSWORD")
        import clickhouse_connect

        client = clickhouse_connect.get_client(host=endpoint.host, port=endpoint.port, username=endpoint.user,
                                               password=endpoint.password, compress=False)
        load_into_clickhouse(warehouse, client, served.clickhouse_database)
        warehouse.unlink()  # nothing to serve from DuckDB: every chart must come from ClickHouse
        env = {ENV_VAR: served.to_json(), served.clickhouse_password_env: endpoint.password,
               # the chDB stand-in admits no tenant login: tenants read with RLS only (tenant_routing.py)
               "TRIALSYNTH_SUPERSET_CLICKHOUSE_RLS_ONLY": "1"}
    try:
        with running_superset(base / "data", base / "home", base / "run_superset.log", env=env) as url:
            yield Server(url, base / "home", counts, request.param, env)
    except RuntimeError as exc:
        pytest.fail(str(exc))


def _rows_by_tenant(client: SupersetClient, dataset_id: int) -> dict[str, int]:
    """Row count per tenant_id of a dataset, through the chart-data API (RLS applies)."""
    body = {"datasource": {"id": dataset_id, "type": "table"}, "force": True, "result_format": "json",
            "result_type": "full", "queries": [{
                "columns": ["tenant_id"], "row_limit": 100,
                "metrics": [{"expressionType": "SQL", "sqlExpression": "COUNT(*)", "label": "n"}]}]}
    data = client.request("POST", "/api/v1/chart/data", json=body)["result"][0]["data"]
    return {row["tenant_id"]: row["n"] for row in data}


def test_the_dashboards_read_the_configured_warehouse(superset: Server):
    [database] = superset.client("admin").list_all("database", "id,database_name,backend")
    assert database["backend"] == {"duckdb": "duckdb", "clickhouse": "clickhousedb"}[superset.target]
    shown = json.dumps(superset.client("admin").get(f"/api/v1/database/{database['id']}"))
    password = superset.env.get("SUPERSET_TEST_CLICKHOUSE_PASSWORD")
    assert password is None or password not in shown  # stored encrypted, never shown


def test_admin_sees_both_tenants_and_each_tenant_user_only_its_own(superset: Server):
    admin = superset.client("admin")
    datasets = {d["table_name"]: d["id"] for d in admin.list_all("dataset", "id,table_name")}
    tenants = {t.tenant: superset.client(t.user) for t in load_rules().tenants}
    for mart, expected in superset.counts.items():
        assert _rows_by_tenant(admin, datasets[mart]) == expected, mart
        for tenant, client in tenants.items():
            assert _rows_by_tenant(client, datasets[mart]) == {tenant: expected[tenant]}, (mart, tenant)
    for mart in PLACEHOLDER_MARTS:  # published as empty placeholders: queries work, no rows
        assert _rows_by_tenant(tenants["acme"], datasets[mart]) == {}


def test_every_saved_chart_answers_through_the_chart_data_api(superset: Server):
    client = superset.client("acme_viewer")
    charts = client.list_all("chart", "id,slice_name")
    assert len(charts) == sum(len(d.charts) for d in SPEC.dashboards.values())
    for chart in charts:
        result = client.get(f"/api/v1/chart/{chart['id']}/data/")["result"][0]
        assert result.get("error") is None, chart["slice_name"]
        assert all(row.get("tenant_id", "acme") == "acme" for row in result["data"])


def test_a_study_without_edc_logs_says_not_available(superset: Server):
    client = superset.client("cdisc_viewer")
    chart = next(c for c in client.list_all("chart", "id,slice_name,dashboards.dashboard_title")
                 if c["slice_name"] == "Data availability"
                 and c["dashboards"][0]["dashboard_title"] == SPEC.dashboards["rbqm"].title)
    rows = client.get(f"/api/v1/chart/{chart['id']}/data/")["result"][0]["data"]
    status = {r["source"]: r["status"] for r in rows}
    assert status["domain dv"] == status["domain queries"] == "not available for this study"
    assert status["domain ae"] == "available" and {r["study_id"] for r in rows} == {"CDISCPILOT01"}


def test_tenant_users_have_no_sql_lab(superset: Server):
    client = superset.client("acme_viewer")
    r = client.session.post(f"{superset.url}/api/v1/sqllab/execute/", timeout=30,
                            json={"database_id": 1, "sql": "SELECT * FROM mart_safety", "runAsync": False})
    assert r.status_code in (401, 403), r.text[:300]


def test_reprovisioning_is_idempotent(superset: Server):
    env = {**os.environ, "SUPERSET_HOME": str(superset.home), "PYTHONPATH": str(ROOT), **superset.env}
    subprocess.run([str(VENV / "bin" / "python"), "-m", "infra.superset.provision", "--url", superset.url,
                    "--serving", str(superset.home.parent / "data" / "serving" / "marts.duckdb")],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=180)
    admin = superset.client("admin")
    rules = load_rules()
    filters = admin.list_all("rowlevelsecurity", "id,name")
    assert sorted(f["name"] for f in filters) == sorted(f"{t.role} rows" for t in rules.tenants)
    users = [u["username"] for u in admin.list_all("security/users", "id,username")]
    assert sorted(users) == sorted(["admin", *(u for t in rules.tenants for u in (t.user, t.analyst) if u)])
    assert len(admin.list_all("dashboard", "id")) == len(SPEC.dashboards)
    assert len(admin.list_all("chart", "id")) == sum(len(d.charts) for d in SPEC.dashboards.values())


def _chart_rows(client: SupersetClient, dashboard: str, name: str) -> list[dict]:
    chart = next(c for c in client.list_all("chart", "id,slice_name,dashboards.dashboard_title")
                 if c["slice_name"] == name and c["dashboards"][0]["dashboard_title"] == SPEC.dashboards[dashboard].title)
    result = client.get(f"/api/v1/chart/{chart['id']}/data/")["result"][0]
    assert result.get("error") is None, name
    return result["data"]


def test_charts_show_names_units_and_scheduled_cells_only(superset: Server):
    acme, cdisc = superset.client("acme_viewer"), superset.client("cdisc_viewer")
    # a study without AE entry dates has no rows for the reporting-time chart (so it says "not available")
    assert _chart_rows(cdisc, "safety", "Mean days from onset to report") == []
    assert _chart_rows(acme, "safety", "Mean days from onset to report")
    hlgt = {r["hlgt_name"] for r in _chart_rows(cdisc, "safety", "AEs by SOC and HLGT")}
    assert hlgt == {"HLGT not coded in this study"}  # never <NULL>
    heat = _chart_rows(acme, "missingness", "% missing (scheduled visits): variable x visit number")
    assert heat and all(r["variable_label"].split(" ")[0] in ("VS", "LB") for r in heat)
    assert all(0 <= r["pct_missing_scheduled"] <= 1 for r in heat)
    kris = _chart_rows(acme, "rbqm", "Flagged KRIs")
    assert kris and all(r["kri_name"].endswith(")") and r["cro_name"] for r in kris)
    assert all(r["cro_name"] == "no CRO" for r in _chart_rows(cdisc, "rbqm", "QTL breaches by site"))
    for endpoint, name in (("continuous", "Power vs effect: continuous endpoints (mean difference)"),
                           ("tte", "Power vs effect: time-to-event endpoints (hazard ratio)")):
        rows = _chart_rows(acme, "design", name)
        assert rows, name  # one endpoint type per chart: the query filters on it
        assert {"continuous": all(r["x"] >= 1 for r in rows), "tte": all(r["x"] < 1 for r in rows)}[endpoint]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_every_dashboard_renders_in_headless_chromium(superset: Server):
    from infra.superset.bundle import NOT_AVAILABLE_TEXT

    user = "acme_viewer"
    load_before = os.getloadavg()[0]
    # CPU the rest of the machine (other sessions) used while the browser ran: all cores' busy time
    # minus this test's processes (Superset, the browser, the stand-ins) and the children they ended
    busy_before, ours_before, started = machine_busy_s(), tree_cpu_s(os.getpid()), time.monotonic()
    out = subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "infra.superset.browser_check", "--url", superset.url, "--user", user,
         "--password-file", str(superset.home / f"{user}_password"), "--dashboards", ",".join(SPEC.dashboards),
         "--out", str(ARTIFACTS / superset.target), "--viewer-pages", ",".join(DENIED_PAGES)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    others = (machine_busy_s() - busy_before - (tree_cpu_s(os.getpid()) - ours_before)) / (time.monotonic() - started)
    result = json.loads(out.stdout)
    result["_machine"] = {"cpus": os.cpu_count(), "load_before": round(load_before, 1),
                          "load_after": round(os.getloadavg()[0], 1), "other_sessions_cores": round(max(others, 0), 2),
                          "date": date.today().isoformat()}
    # the load times go to benchmarks/results/superset.md (infra/superset/load_report.py)
    (ARTIFACTS / superset.target / "browser_check.json").write_text(json.dumps(result, indent=1))
    for slug, dash in SPEC.dashboards.items():
        page = result[slug]
        states = {c["title"]: c["state"] for c in page["charts"]}
        assert set(states) == {c.name for c in dash.charts}, slug
        assert page["error_banners"] == 0 and "error" not in states.values(), (slug, states)
        for chart in dash.charts:
            expected = {"empty"} if chart.dataset in PLACEHOLDER_MARTS else {"drawn", "table", "number", "empty"}
            assert states[chart.name] in expected, (slug, chart.name, states[chart.name])
        for chart in page["charts"]:
            assert "<NULL>" not in chart["text"] and "None" not in chart["text"].split(), (slug, chart["title"])
            if chart["state"] == "empty":  # never blank axes: the dashboard says why there is nothing
                assert chart["empty_message"] == NOT_AVAILABLE_TEXT, (slug, chart["title"])
        assert page["canvas_or_svg"] > 0
        assert Path(page["screenshot"]).stat().st_size > 20_000
        assert page["charts_in_screenshot"] == len(dash.charts), slug
        # the cold time covers the whole load: every chart fetched its data and the timer stopped only
        # after the last answer; scripts and styles came compressed
        cold = page["cold_breakdown"]
        assert cold["chart_data"]["n"] >= len(dash.charts), (slug, cold)
        assert page["cold_s"] >= cold["chart_data"]["last_end_s"] > cold["bootstrap"]["last_end_s"] > 0, (slug, cold)
        assert cold["static"]["js_css_uncompressed"] == 0 and page["warm_s"] > 0, (slug, cold)
    # issue 14's goal, cold load under 3 s on every dashboard, holds while other sessions leave the
    # machine quiet (on average under QUIET_CORES of CPU during the run); under more load the times
    # measure the CPU share left to the browser and Superset, and the report records it beside them
    worst = max(result[slug]["cold_s"] for slug in SPEC.dashboards)
    if others < QUIET_CORES:
        assert worst < GOAL_S, (worst, result["_machine"])
    charts = {(slug, c["title"]): c for slug in SPEC.dashboards for c in result[slug]["charts"]}
    # status colours: the same red / amber / green in pies, bars and table cells, with the status in words
    for key in (("wasserstein", "Variables by status"), ("wasserstein", "Distance by variable"),
                ("wasserstein", "Leaderboard")):
        assert {"fail", "warn", "pass"} <= set(charts[key]["status_colours"]), (key, charts[key]["status_colours"])
    assert "FAIL" in charts["wasserstein", "Leaderboard"]["text"]
    assert charts["rbqm", "KRI flags by site"]["status_colours"].get("fail", 0) > 0  # ALARM bars in red
    flagged = charts["rbqm", "Flagged KRIs"]
    assert "ALARM" in flagged["text"] and flagged["status_colours"].get("fail", 0) > 0
    assert "no CRO" in flagged["text"] and "KRI (unit)" in flagged["text"]
    assert any(u in flagged["text"] for u in ("per 1,000 subject-days", "per 100 CRF pages", "% of"))
    qtl = charts["rbqm", "Study QTL status"]
    assert "BREACHED" in qtl["text"] and "true" not in qtl["text"].split()
    safety = charts["safety", "AEs by SOC and HLGT"]["text"]
    assert "Nervous system disorders" in safety and "Headaches" in safety and "%" in safety
    design = charts["design", "N per arm: analysable and to enrol"]["text"]
    assert "analysable N per arm, control" in design and "N to enrol per arm, control" in design
    # viewers get a page that says what happened, not Superset's raw JSON, and Explore's Samples
    # tab works for them (their own tenant's rows only)
    pages = result["_viewer_pages"]
    for path in DENIED_PAGES:
        assert pages[path]["status"] in (401, 403) and not pages[path]["raw_json"], path
        assert "You do not have access to this page" in pages[path]["text"], path
    assert pages["samples:mart_safety"] == {"status": 200, "message": None, "tenants": ["acme"]}
    requests.get(superset.url + "/health", timeout=5).raise_for_status()
