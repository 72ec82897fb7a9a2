"""Superset reads each tenant's own store (issue 12, "Serving (Superset)"), not only RLS.

Every engine Superset builds goes through ``infra.superset.tenant_routing.mutate_connection``: a user
with one tenant role reads that tenant's serving file (``<serving>/tenants/<t>.duckdb``), the Admin
the all-tenant file, anyone else is refused. The first tests check the routing rules without
Superset; the rest start ``run_superset.sh`` on a two-tenant warehouse (acme, cdisc) and attack it
as ``acme_analyst`` (a tenant user WITH SQL Lab and dataset creation) through the REST API:
SQL Lab with and without ``WHERE``, with acme's RLS filter switched off, ``ATTACH`` / ``read_parquet``
/ a path as table of the other tenant's file, a virtual dataset with custom SQL through the chart-data
API, the results cache across stores, and users with no or two tenants' roles; then a query run
in the SQL Lab page in headless Chromium (screenshot in test-artifacts/superset/tenant_routing/).
DuckDB target only (see docs/security.md for what is left on ClickHouse). About 60 s on 2 shared
cores, most of it Superset's start.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from infra.superset.provision import Rules, SupersetClient, TenantRule, load_rules
from infra.superset.tenant_routing import (
    ALL_TENANTS,
    CLICKHOUSE_USER_PREFIX,
    DUCKDB_LOCKDOWN,
    PASSWORDS_ENV,
    RLS_ONLY_ENV,
    RoutingRefused,
    route_for,
    routed_url,
    tenant_file,
)

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-superset"
A, B = "acme", "cdisc"  # the sample warehouse's two tenants
needs_superset = pytest.mark.skipif(not (VENV / ".installed").exists(),
                                    reason=f"{VENV} is absent: run infra/superset/install.sh")
RULES = Rules("Gamma", "tenant", "tenant_id = '{tenant}'",
              [TenantRule(A, "tenant_acme", "acme_viewer"), TenantRule(B, "tenant_cdisc", "cdisc_viewer")])


# ----------------------------------------------------------------------------------------------
# The routing rules, without Superset
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("roles", "route"), [
    (["Gamma", "tenant_acme"], A),
    (["Gamma", "sql_lab", "tenant_analyst", "tenant_cdisc"], B),
    (["Admin"], ALL_TENANTS),
    (["Admin", "tenant_acme"], ALL_TENANTS),
])
def test_a_user_reads_its_one_tenant_or_all_as_admin(roles, route) -> None:
    assert route_for("someone", roles, RULES) == route


@pytest.mark.parametrize(("username", "roles", "message"), [
    ("someone", ["Gamma", "sql_lab"], "no tenant role"),
    ("someone", ["Gamma", "tenant_acme", "tenant_cdisc"], r"several tenants \(acme, cdisc\)"),
    (None, ["tenant_acme"], "no authenticated user"),
])
def test_anyone_else_is_refused(username, roles, message) -> None:
    with pytest.raises(RoutingRefused, match=message):
        route_for(username, roles, RULES)


def test_tenant_url_is_its_own_file_locked_down_whatever_the_stored_uri_says(tmp_path) -> None:
    serving = tmp_path / "marts.duckdb"
    tenant_file(serving, A).parent.mkdir()
    tenant_file(serving, A).touch()
    stored = sa.make_url(f"duckdb:///{serving}?enable_external_access=true&threads=2")
    url = routed_url(stored, A)
    assert Path(url.database) == tmp_path / "tenants" / "acme.duckdb"
    assert {k: url.query[k] for k in DUCKDB_LOCKDOWN} == DUCKDB_LOCKDOWN and url.query["threads"] == "2"
    assert routed_url(stored, ALL_TENANTS) == stored
    with pytest.raises(RoutingRefused, match="no serving file"):
        routed_url(stored, B)


def test_clickhouse_tenant_url_is_its_login_and_other_backends_are_refused() -> None:
    stored = sa.make_url("clickhousedb://default:admin-pw@ch:8123/trialsynth_serving?compress=false")
    url = routed_url(stored, A, passwords={A: "acme-pw"})
    assert (url.username, url.password, url.host, url.database) == ("ts_acme", "acme-pw", "ch", "trialsynth_serving")
    with pytest.raises(RoutingRefused, match="no ClickHouse password for tenant 'cdisc'"):
        routed_url(stored, B, passwords={A: "acme-pw"})
    with pytest.raises(RoutingRefused, match="postgresql database has no per-tenant store"):
        routed_url(sa.make_url("postgresql://u:p@h/db"), A)


def test_clickhouse_without_tenant_logins_refuses_unless_told_rls_only(monkeypatch) -> None:
    stored = sa.make_url("clickhousedb://default:admin-pw@ch:8123/trialsynth_serving")
    monkeypatch.delenv(PASSWORDS_ENV, raising=False)
    monkeypatch.delenv(RLS_ONLY_ENV, raising=False)
    with pytest.raises(RoutingRefused, match=f"{PASSWORDS_ENV} is not set"):
        routed_url(stored, A)
    monkeypatch.setenv(RLS_ONLY_ENV, "1")
    assert routed_url(stored, A) == stored


def test_routing_uses_the_layouts_publish_and_clickhouse_access_create(tmp_path) -> None:
    from trialsynth.tenancy.clickhouse import TenantAccess
    from trialsynth.tenancy.serving import tenant_serving_path

    assert tenant_file(tmp_path / "marts.duckdb", A) == tenant_serving_path(tmp_path, A)
    assert f"{CLICKHOUSE_USER_PREFIX}{A}" == TenantAccess(A, "trialsynth").user


def test_rules_refuse_a_role_shared_by_tenants_or_given_to_every_user(tmp_path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("clause: \"tenant_id = '{tenant}'\"\nanalyst_role: tenant_x\ntenants:\n"
                     "  - {tenant: x, role: tenant_x, user: x_viewer}\n")
    with pytest.raises(ValueError, match="a role of its own"):
        load_rules(rules)


# ----------------------------------------------------------------------------------------------
# Superset, through its REST API
# ----------------------------------------------------------------------------------------------
@dataclass
class Routed:
    url: str
    home: Path
    serving: Path
    counts: dict[str, dict[str, int]]
    schema: str = "main"  # SQL Lab's schema: ClickHouse's serving database on that target
    clients: dict[str, SupersetClient] = field(default_factory=dict)

    def client(self, user: str) -> SupersetClient:
        """One logged-in session per user (Superset rate-limits logins to 5 a second)."""
        if user not in self.clients:
            self.clients[user] = SupersetClient(self.url, user, (self.home / f"{user}_password").read_text().strip())
        return self.clients[user]

    def sql(self, user: str, sql: str) -> tuple[int, dict[str, Any]]:
        """SQL Lab as ``user``: (HTTP status, body)."""
        r = self.client(user).session.post(f"{self.url}/api/v1/sqllab/execute/", timeout=60, json={
            "database_id": 1, "sql": sql, "schema": self.schema, "runAsync": False, "client_id": secrets.token_hex(5)})
        return r.status_code, r.json()

    def rows(self, user: str, sql: str) -> list[dict[str, Any]]:
        status, body = self.sql(user, sql)
        assert status == 200, (user, sql, json.dumps(body)[:800])
        return body["data"]

    def tenants_by_chart_data(self, user: str, dataset_id: int, force: bool = True) -> tuple[dict[str, int], bool]:
        """({tenant_id: rows}, served from the cache) of a dataset through the chart-data API."""
        body = {"datasource": {"id": dataset_id, "type": "table"}, "force": force, "result_format": "json",
                "result_type": "full", "queries": [{"columns": ["tenant_id"], "row_limit": 100, "metrics": [
                    {"expressionType": "SQL", "sqlExpression": "COUNT(*)", "label": "n"}]}]}
        result = self.client(user).request("POST", "/api/v1/chart/data", json=body)["result"][0]
        return {r["tenant_id"]: r["n"] for r in result["data"]}, bool(result.get("is_cached"))


def _add_user(admin: SupersetClient, home: Path, user: str, role_ids: list[int]) -> None:
    password = secrets.token_urlsafe(12)
    (home / f"{user}_password").write_text(password)
    admin.request("POST", "/api/v1/security/users/", json={
        "username": user, "first_name": user, "last_name": "test", "email": f"{user}@test.invalid",
        "active": True, "roles": role_ids, "password": password})


@pytest.fixture(scope="module")
def superset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    from infra.superset.sample_marts import build_sample_warehouse
    from infra.superset.server import running_superset

    base = tmp_path_factory.mktemp("superset_routing")
    counts = build_sample_warehouse(base / "data" / "warehouse" / "trialsynth.duckdb", n_subjects=30, cdisc_subjects=40)
    try:
        with running_superset(base / "data", base / "home", base / "run_superset.log", workers=1) as url:
            routed = Routed(url, base / "home", base / "data" / "serving" / "marts.duckdb", counts)
            admin = routed.client("admin")
            roles = {r["name"]: r["id"] for r in admin.list_all("security/roles")}
            # a role reading every mart like a tenant role, but of no tenant
            readers = int(admin.request("POST", "/api/v1/security/roles/", json={"name": "readers_of_no_tenant"})["id"])
            perms = admin.get(f"/api/v1/security/roles/{roles['tenant_acme']}/permissions/")["result"]
            admin.request("POST", f"/api/v1/security/roles/{readers}/permissions",
                          json={"permission_view_menu_ids": [p["id"] for p in perms]})
            analyst = [roles["Gamma"], roles["sql_lab"], roles["tenant_analyst"]]
            _add_user(admin, routed.home, "no_tenant_analyst", [*analyst, readers])
            _add_user(admin, routed.home, "two_tenant_analyst", [*analyst, roles["tenant_acme"], roles["tenant_cdisc"]])
            yield routed
    except RuntimeError as exc:
        pytest.fail(str(exc))


@needs_superset
@pytest.mark.parametrize(("user", "tenant"), [("acme_analyst", A), ("cdisc_analyst", B)])
def test_analyst_sql_lab_reads_its_own_tenants_file(superset: Routed, user, tenant) -> None:
    assert superset.rows(user, "SELECT DISTINCT tenant_id FROM mart_safety") == [{"tenant_id": tenant}]
    [where] = superset.rows(user, "SELECT current_database() AS file, current_setting('access_mode') AS mode, "
                                  "current_setting('enable_external_access') AS external")
    assert where == {"file": tenant, "mode": "read_only", "external": False}
    assert superset.rows("admin", "SELECT current_database() AS file") == [{"file": "marts"}]


@needs_superset
def test_sql_without_where_returns_all_and_only_the_tenants_rows(superset: Routed) -> None:
    for mart, expected in superset.counts.items():
        got = superset.rows("acme_analyst", f"SELECT tenant_id, count(*) AS n FROM {mart} GROUP BY tenant_id")
        assert {r["tenant_id"]: r["n"] for r in got} == {A: expected[A]}, mart
    assert superset.rows("acme_analyst", "SELECT count(*) AS n FROM mart_safety WHERE tenant_id = 'cdisc'") == [{"n": 0}]
    got = superset.rows("admin", "SELECT tenant_id, count(*) AS n FROM mart_safety GROUP BY tenant_id ORDER BY 1")
    assert got == [{"tenant_id": t, "n": superset.counts["mart_safety"][t]} for t in (A, B)]


@needs_superset
def test_with_acmes_rls_filter_switched_off_acme_still_reads_only_acme(superset: Routed) -> None:
    """The store, not RLS, keeps cdisc out: acme's RLS filter loses its role for the duration."""
    admin = superset.client("admin")
    [rls] = [f for f in admin.list_all("rowlevelsecurity", "id,name") if f["name"] == "tenant_acme rows"]
    roles = [r["id"] for r in admin.get(f"/api/v1/rowlevelsecurity/{rls['id']}")["result"]["roles"]]
    admin.request("PUT", f"/api/v1/rowlevelsecurity/{rls['id']}", json={"roles": []})
    try:
        got = superset.rows("acme_analyst", "SELECT tenant_id, count(*) AS n FROM mart_safety GROUP BY tenant_id")
        assert got == [{"tenant_id": A, "n": superset.counts["mart_safety"][A]}]
    finally:
        admin.request("PUT", f"/api/v1/rowlevelsecurity/{rls['id']}", json={"roles": roles})


@needs_superset
@pytest.mark.parametrize("sql", [
    "ATTACH '{other}' AS b (READ_ONLY)",
    "ATTACH '{shared}' AS s (READ_ONLY)",
    "SELECT * FROM read_parquet('{other}')",
    "SELECT * FROM '{other}'",
    "SELECT tenant_id FROM cdisc.main.mart_safety",
    "SELECT tenant_id FROM marts.main.mart_safety",
    "SET enable_external_access = true",
])
def test_sql_lab_cannot_reach_another_tenants_file(superset: Routed, sql) -> None:
    status, body = superset.sql("acme_analyst", sql.format(other=tenant_file(superset.serving, B), shared=superset.serving))
    assert status >= 400 and body.get("errors"), body
    assert "data" not in body


@needs_superset
@pytest.mark.parametrize(("user", "tenant", "other"), [("acme_analyst", A, "cdisc_analyst"),
                                                        ("cdisc_analyst", B, "acme_analyst")])
def test_virtual_dataset_with_custom_sql_reads_only_the_tenant(superset: Routed, user, tenant, other) -> None:
    created = superset.client(user).request("POST", "/api/v1/dataset/", json={
        "database": 1, "schema": "main", "table_name": f"{user}_custom_{secrets.token_hex(3)}",
        "sql": "SELECT tenant_id, study_id, n_events FROM mart_safety"})
    assert superset.tenants_by_chart_data(user, created["id"])[0] == {tenant: superset.counts["mart_safety"][tenant]}
    r = superset.client(other).session.post(f"{superset.url}/api/v1/chart/data", timeout=60, json={
        "datasource": {"id": created["id"], "type": "table"}, "queries": [{"columns": ["tenant_id"]}]})
    assert r.status_code == 403  # the other tenant's analyst cannot even open it


@needs_superset
def test_cached_result_of_one_store_is_never_served_from_another(superset: Routed) -> None:
    """A virtual dataset has no RLS filter, so RLS alone gives the Admin's and acme's identical
    queries the same cache key; the routed store in the key keeps them apart."""
    created = superset.client("acme_analyst").request("POST", "/api/v1/dataset/", json={
        "database": 1, "schema": "main", "table_name": f"cache_probe_{secrets.token_hex(3)}",
        "sql": "SELECT tenant_id FROM mart_safety"})
    everyone = {t: superset.counts["mart_safety"][t] for t in (A, B)}
    assert superset.tenants_by_chart_data("admin", created["id"], force=False) == (everyone, False)
    assert superset.tenants_by_chart_data("acme_analyst", created["id"], force=False) == ({A: everyone[A]}, False)
    assert superset.tenants_by_chart_data("acme_analyst", created["id"], force=False) == ({A: everyone[A]}, True)
    assert superset.tenants_by_chart_data("admin", created["id"], force=False) == (everyone, True)


@needs_superset
def test_stored_sql_lab_result_of_acme_is_not_fetched_by_cdisc_with_its_key(superset: Routed) -> None:
    """SQL Lab keeps each result in the results backend under a key; Superset lets anyone with access
    to the query's tables fetch it by that key. Only the query's owner (or an Admin) may."""
    status, body = superset.sql("acme_analyst", "SELECT DISTINCT tenant_id, study_id FROM mart_safety")
    key = body["query"]["resultsKey"]
    url = f"{superset.url}/api/v1/sqllab/results/"
    q = {"q": f"(key:'{key}')"}
    assert superset.client("acme_analyst").session.get(url, params=q, timeout=60).json()["data"] == body["data"]
    stolen = superset.client("cdisc_analyst").session.get(url, params=q, timeout=60)
    assert stolen.status_code == 403 and "acme" not in stolen.text.replace("acme_analyst", ""), stolen.text[:300]


@needs_superset
@pytest.mark.parametrize(("user", "why"), [("no_tenant_analyst", "no tenant role"),
                                           ("two_tenant_analyst", "several tenants")])
def test_user_without_exactly_one_tenant_is_refused_not_given_the_shared_store(superset: Routed, user, why) -> None:
    status, body = superset.sql(user, "SELECT DISTINCT tenant_id FROM mart_safety")
    assert status >= 400 and "Refused by tenant routing" in body["errors"][0]["message"] and why in json.dumps(body)
    datasets = {d["table_name"]: d["id"] for d in superset.client("admin").list_all("dataset", "id,table_name")}
    r = superset.client(user).session.post(f"{superset.url}/api/v1/chart/data", timeout=60, json={
        "datasource": {"id": datasets["mart_safety"], "type": "table"}, "queries": [{"columns": ["tenant_id"]}]})
    assert r.status_code >= 400 and "Refused by tenant routing" in r.text


@needs_superset
def test_tenant_viewers_still_have_no_sql_lab(superset: Routed) -> None:
    assert superset.sql("acme_viewer", "SELECT 1")[0] in (401, 403)


# ----------------------------------------------------------------------------------------------
# Superset, in the browser
# ----------------------------------------------------------------------------------------------
@needs_superset
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
def test_sql_lab_page_shows_acme_analyst_no_cdisc_value(superset: Routed) -> None:
    out = ROOT / "test-artifacts" / "superset" / "tenant_routing"
    proc = subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "infra.superset.sqllab_browser", "--url", superset.url,
         "--user", "acme_analyst", "--password-file", str(superset.home / "acme_analyst_password"),
         "--sql", "SELECT tenant_id, study_id, count(*) AS n FROM mart_safety GROUP BY ALL", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-3000:]
    grid = json.loads(proc.stdout)["grid_text"]
    assert "ACME-001" in grid and "acme" in grid
    assert "cdisc" not in grid.lower()


# ----------------------------------------------------------------------------------------------
# ClickHouse target on the chDB stand-in: no tenant login exists there, so routing must fail closed
# ----------------------------------------------------------------------------------------------
@needs_superset
@pytest.mark.slow
def test_clickhouse_tenant_user_connects_as_its_login_never_the_shared_one(clickhouse_endpoint, tmp_path) -> None:
    """acme's analyst is routed to login ``ts_acme`` (the stand-in refuses it: AUTHENTICATION_FAILED);
    cdisc's, with no password on file, is refused by the routing; the Admin reads both tenants. What a
    real server would add (ts_acme reading ``<db>_serving`` under its row policy) is in docs/security.md."""
    import uuid

    import clickhouse_connect

    from infra.superset.sample_marts import build_sample_warehouse, load_into_clickhouse
    from infra.superset.server import running_superset
    from infra.superset.warehouse import ENV_VAR, ServedWarehouse

    ch = clickhouse_endpoint
    served = ServedWarehouse(target="clickhouse", clickhouse_host=ch.host, clickhouse_port=ch.port, clickhouse_user=ch.user,
                             clickhouse_database=f"routing_{uuid.uuid4().hex[:8]}",
                             clickhouse_password_env="SUPERSET_TEST_CLICKHOUSE_PASSWORD")
    warehouse = tmp_path / "data" / "warehouse" / "trialsynth.duckdb"
    counts = build_sample_warehouse(warehouse, n_subjects=30, cdisc_subjects=40)
    client = clickhouse_connect.get_client(host=ch.host, port=ch.port, username=ch.user, password=ch.password,
                                           compress=False)
    load_into_clickhouse(warehouse, client, served.clickhouse_database)
    warehouse.unlink()
    passwords = tmp_path / "tenant_passwords.json"
    passwords.write_text(json.dumps({A: "acme-password"}))
    env = {ENV_VAR: served.to_json(), served.clickhouse_password_env: ch.password, PASSWORDS_ENV: str(passwords)}
    with running_superset(tmp_path / "data", tmp_path / "home", tmp_path / "run_superset.log", workers=1, env=env) as url:
        routed = Routed(url, tmp_path / "home", tmp_path / "unused.duckdb", counts, served.serving_database)
        got = routed.rows("admin", f"SELECT tenant_id, count() AS n FROM {served.serving_database}.mart_safety "
                                   "GROUP BY tenant_id ORDER BY tenant_id")
        assert got == [{"tenant_id": t, "n": counts["mart_safety"][t]} for t in (A, B)]
        sql = f"SELECT DISTINCT tenant_id FROM {served.serving_database}.mart_safety"
        status, body = routed.sql("acme_analyst", sql)
        assert status >= 400 and "data" not in body and "ts_acme" in json.dumps(body), body
        status, body = routed.sql("cdisc_analyst", sql)
        assert status >= 400 and "no ClickHouse password for tenant 'cdisc'" in json.dumps(body), body
