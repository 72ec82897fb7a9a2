"""Apply the dashboards bundle and the row-level-security rules to a running Superset, idempotently.

Through the REST API as admin: ``POST /api/v1/assets/import/`` (databases, datasets, charts and
dashboards, all overwritten), then per tenant of ``superset_config/rls_rules.yaml`` a role with
read access to every bundle dataset, a Regular RLS filter on all of them, a viewer and (``analyst:``)
an analyst user with SQL Lab (``analyst_roles``). Which store each user's SQL reaches is decided at
connect time by :mod:`infra.superset.tenant_routing`. Objects are
found by name and updated, so running it again changes nothing but what the files changed.

Secrets: the admin's and every tenant user's password live in ``$SUPERSET_HOME/<user>_password``
(0600). :func:`stored_password` takes the environment variable when set, else the file, else
generates one and prints it once.

The bundle's database is the served warehouse (:mod:`infra.superset.warehouse`): the DuckDB serving
file, or ClickHouse's serving database, whose password goes beside the bundle (never into it).

Run: ``python -m infra.superset.provision --url http://127.0.0.1:8088 [--serving data/serving/marts.duckdb]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests
import yaml

from infra.superset.bundle import DATABASE_NAME, bundle_passwords, bundle_zip, managed_uuids
from infra.superset.spec import ROOT, load_spec
from infra.superset.warehouse import ServedWarehouse, current

RULES_PATH = ROOT / "superset_config" / "rls_rules.yaml"
VIEWER_EXTRA_PERMISSIONS = {("can_samples", "Datasource"), ("can_drill", "Dashboard")}
# The analyst role (rules' analyst_role) beyond Gamma and sql_lab: save SQL as a virtual dataset
# (custom SQL) and explore it; editing a dataset still needs its ownership
ANALYST_PERMISSIONS = {("can_write", "Dataset"), ("can_get_or_create_dataset", "Dataset")}
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def superset_home() -> Path:
    return Path(os.environ.get("SUPERSET_HOME") or ROOT / ".superset_home")


def stored_password(user: str, env_var: str | None = None, home: Path | None = None) -> str:
    """The password of ``user``: ``$env_var`` if set, else ``<home>/<user>_password``, else a new
    random one (printed once, stored 0600). An environment password is stored too, so later runs
    without the variable still log in."""
    home = home or superset_home()
    home.mkdir(parents=True, exist_ok=True)
    path = home / f"{user}_password"
    value = os.environ.get(env_var or "") or None
    if value is None and path.exists():
        return path.read_text().strip()
    generated = value is None
    value = value or secrets.token_urlsafe(18)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.replace(tmp, path)
    if generated:
        print(f"generated password for Superset user {user!r}: {value}  (stored in {path})", file=sys.stderr)
    return value


@dataclass(frozen=True)
class TenantRule:
    tenant: str
    role: str
    user: str
    analyst: str | None = None  # a user with SQL Lab (analyst_roles) on this tenant's store


@dataclass(frozen=True)
class Rules:
    base_role: str
    group_key: str
    clause: str
    tenants: list[TenantRule]
    analyst_roles: tuple[str, ...] = ()  # existing roles analysts also get (Superset's sql_lab)
    analyst_role: str | None = None  # created with ANALYST_PERMISSIONS

    def clause_for(self, tenant: str) -> str:
        return self.clause.format(tenant=tenant)


def load_rules(path: Path = RULES_PATH) -> Rules:
    raw = yaml.safe_load(Path(path).read_text())
    tenants = [TenantRule(t["tenant"], t["role"], t["user"], t.get("analyst")) for t in raw["tenants"]]
    for t in tenants:
        if not _TENANT_RE.match(t.tenant):
            raise ValueError(f"{path}: tenant {t.tenant!r} must match {_TENANT_RE.pattern} (it is put in SQL)")
    if "{tenant}" not in raw["clause"]:
        raise ValueError(f"{path}: clause must contain {{tenant}}")
    rules = Rules(raw.get("base_role", "Gamma"), raw.get("group_key", "tenant"), raw["clause"], tenants,
                  tuple(raw.get("analyst_roles", ())), raw.get("analyst_role"))
    roles = [t.role for t in tenants]
    shared = {rules.base_role, *rules.analyst_roles, rules.analyst_role} & set(roles)
    if len(set(roles)) != len(roles) or shared:
        raise ValueError(f"{path}: each tenant needs a role of its own (its role decides the store a user reads), "
                         f"got {roles}" + (f"; {sorted(shared)} also given to every user" if shared else ""))
    return rules


class SupersetClient:
    """Authenticated REST session (JWT bearer + CSRF token, as the API requires for writes)."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        r = self.session.post(f"{self.url}/api/v1/security/login", timeout=timeout,
                              json={"username": username, "password": password, "provider": "db", "refresh": True})
        if r.status_code != 200:
            raise PermissionError(f"login as {username!r} failed: HTTP {r.status_code} {r.text[:200]}")
        self.session.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        csrf = self.get("/api/v1/security/csrf_token/")["result"]
        self.session.headers.update({"X-CSRFToken": csrf, "Referer": self.url})

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        r = self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {r.status_code} {r.text[:500]}")
        return r.json() if r.content else {}

    def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.request("GET", path, **kwargs)

    def list_all(self, resource: str, columns: str = "") -> list[dict[str, Any]]:
        """Every row of ``/api/v1/<resource>/`` (paged)."""
        rows: list[dict[str, Any]] = []
        page = 0
        while True:
            q = f"(page:{page},page_size:100{',columns:!(' + columns + ')' if columns else ''})"
            result = self.get(f"/api/v1/{resource}/", params={"q": q})["result"]
            rows += result
            if len(result) < 100:
                return rows
            page += 1


def import_bundle(client: SupersetClient, warehouse: ServedWarehouse) -> list[str]:
    """Import (overwrite) databases, datasets, charts and dashboards, then delete the charts and
    dashboards an earlier bundle managed that this one no longer has (a renamed or removed chart);
    objects people made in the UI are not managed and never deleted. Returns what was deleted."""
    spec = load_spec()
    client.request("POST", "/api/v1/assets/import/", data={"passwords": json.dumps(bundle_passwords(warehouse))},
                   files={"bundle": ("trialsynth_dashboards.zip", bundle_zip(spec, warehouse), "application/zip")})
    removed = []
    for resource, keep in managed_uuids(spec).items():
        for row in client.list_all(resource, "id,uuid,is_managed_externally"):
            if row.get("is_managed_externally") and str(row.get("uuid")) not in keep:
                client.request("DELETE", f"/api/v1/{resource}/{row['id']}")
                removed.append(f"{resource} {row['id']}")
    return removed


def _upsert(client: SupersetClient, resource: str, existing: dict[str, int], name: str, body: dict[str, Any]) -> int:
    if name in existing:
        client.request("PUT", f"/api/v1/{resource}/{existing[name]}", json=body)
        return existing[name]
    return int(client.request("POST", f"/api/v1/{resource}/", json=body)["id"])


def apply_rls(client: SupersetClient, rules: Rules, home: Path | None = None) -> dict[str, Any]:
    """Create or update tenant roles, their RLS filters and users; returns ids for the report."""
    spec = load_spec()
    datasets = {d["table_name"]: d["id"] for d in client.list_all("dataset", "id,table_name,database.database_name")
                if d["table_name"] in spec.datasets and d.get("database", {}).get("database_name") == DATABASE_NAME}
    missing = sorted(set(spec.datasets) - set(datasets))
    if missing:
        raise RuntimeError(f"datasets {missing} are not in Superset: import the bundle first")
    perm_views = client.list_all("security/permissions-resources")
    access_ids = [pv["id"] for pv in perm_views if pv["permission"]["name"] == "datasource_access"
                  and any(pv["view_menu"]["name"] == f"[{DATABASE_NAME}].[{t}](id:{i})" for t, i in datasets.items())]
    if len(access_ids) != len(datasets):
        raise RuntimeError(f"found {len(access_ids)} datasource_access permissions for {len(datasets)} datasets")
    # Explore's Samples and drill-to-detail read rows of the dataset (row-level security applies);
    # without these a viewer gets "Access is Denied" in the Samples tab
    access_ids += [pv["id"] for pv in perm_views if (pv["permission"]["name"], pv["view_menu"]["name"])
                   in VIEWER_EXTRA_PERMISSIONS]
    roles = {r["name"]: r["id"] for r in client.list_all("security/roles")}
    for name in (rules.base_role, *rules.analyst_roles):
        if name not in roles:
            raise RuntimeError(f"role {name!r} does not exist (did `superset init` run?)")
    if rules.analyst_role:
        if rules.analyst_role not in roles:
            roles[rules.analyst_role] = int(client.request("POST", "/api/v1/security/roles/",
                                                           json={"name": rules.analyst_role})["id"])
        client.request("POST", f"/api/v1/security/roles/{roles[rules.analyst_role]}/permissions", json={
            "permission_view_menu_ids": [pv["id"] for pv in perm_views
                                         if (pv["permission"]["name"], pv["view_menu"]["name"]) in ANALYST_PERMISSIONS]})
    filters = {f["name"]: f["id"] for f in client.list_all("rowlevelsecurity", "id,name")}
    users = {u["username"]: u["id"] for u in client.list_all("security/users", "id,username")}
    out: dict[str, Any] = {}
    for t in rules.tenants:
        role_id = roles.get(t.role) or int(client.request("POST", "/api/v1/security/roles/", json={"name": t.role})["id"])
        client.request("POST", f"/api/v1/security/roles/{role_id}/permissions",
                       json={"permission_view_menu_ids": access_ids})
        rls_id = _upsert(client, "rowlevelsecurity", filters, f"{t.role} rows", {
            "name": f"{t.role} rows", "description": f"Rows of tenant {t.tenant} only (superset_config/rls_rules.yaml)",
            "filter_type": "Regular", "tables": sorted(datasets.values()), "roles": [role_id],
            "group_key": rules.group_key, "clause": rules.clause_for(t.tenant)})
        user_id = _upsert(client, "security/users", users, t.user, {
            "username": t.user, "first_name": t.tenant, "last_name": "viewer", "email": f"{t.user}@{t.tenant}.invalid",
            "active": True, "roles": [roles[rules.base_role], role_id],
            "password": stored_password(t.user, home=home)})
        out[t.tenant] = {"role_id": role_id, "rls_id": rls_id, "user_id": user_id, "user": t.user}
        if t.analyst:
            out[t.tenant]["analyst_id"] = _upsert(client, "security/users", users, t.analyst, {
                "username": t.analyst, "first_name": t.tenant, "last_name": "analyst",
                "email": f"{t.analyst}@{t.tenant}.invalid", "active": True,
                "roles": [roles[r] for r in (rules.base_role, *rules.analyst_roles, rules.analyst_role) if r] + [role_id],
                "password": stored_password(t.analyst, home=home)})
    return out


def wait_until_up(url: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(f"{url.rstrip('/')}/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Superset at {url} did not answer /health within {timeout_s:.0f} s")
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Import the dashboards bundle and apply RLS rules through the REST API.")
    p.add_argument("--url", default="http://127.0.0.1:8088")
    p.add_argument("--serving", type=Path, help="DuckDB serving file the bundle's database points at "
                   "(default: the served warehouse's, see infra/superset/warehouse.py)")
    p.add_argument("--rules", type=Path, default=RULES_PATH)
    p.add_argument("--admin", default="admin")
    args = p.parse_args(argv)
    wait_until_up(args.url)
    client = SupersetClient(args.url, args.admin, stored_password(args.admin, "SUPERSET_ADMIN_PASSWORD"))
    warehouse = replace(current(), serving_path=str(args.serving)) if args.serving else current()
    removed = import_bundle(client, warehouse)
    spec = load_spec()
    print(f"imported {len(spec.dashboards)} dashboards, {sum(len(d.charts) for d in spec.dashboards.values())} charts, "
          f"{len(spec.datasets)} datasets" + (f"; deleted no longer managed {', '.join(removed)}" if removed else ""))
    result = apply_rls(client, load_rules(args.rules))
    print("row-level security:", json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
