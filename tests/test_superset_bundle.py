"""Dashboards-as-code bundle, serving-file publish and RLS rules, without a running Superset."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pytest
import yaml

from infra.superset.bundle import DATABASE_NAME, bundle_zip, object_uuid, serving_uri
from infra.superset.provision import load_rules, stored_password
from infra.superset.publish import NOT_AVAILABLE, WarehouseBusyError, publish
from infra.superset.sample_marts import build_sample_warehouse
from infra.superset.spec import AVAILABILITY_DATASET, SPEC_PATH, load_spec
from infra.superset.warehouse import ServedWarehouse

SPEC = load_spec()


def _bundle(tmp_path: Path) -> dict[str, dict]:
    with zipfile.ZipFile(io.BytesIO(bundle_zip(SPEC, ServedWarehouse(serving_path=str(tmp_path / "marts.duckdb"))))) as zf:
        return {name: yaml.safe_load(zf.read(name)) for name in zf.namelist()}


def test_spec_lists_six_dashboards_on_marts_with_tenant_and_study():
    assert len(SPEC.dashboards) == 6
    for ds in SPEC.datasets.values():
        assert list(ds.columns)[:2] == ["tenant_id", "study_id"]
    for dash in SPEC.dashboards.values():
        assert any(c.dataset == AVAILABILITY_DATASET for c in dash.charts), dash.slug


def test_spec_rejects_a_chart_on_an_unknown_column(tmp_path: Path):
    raw = yaml.safe_load(SPEC_PATH.read_text())
    raw["dashboards"]["safety"]["charts"][1]["x"] = "no_such_column"
    bad = tmp_path / "dashboards.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="no_such_column"):
        load_spec(bad)


def test_bundle_layout_follows_the_superset_import_format(tmp_path: Path):
    files = _bundle(tmp_path)
    roots = {name.split("/")[0] for name in files}
    assert len(roots) == 1
    root = roots.pop()
    assert files[f"{root}/metadata.yaml"]["version"] == "1.0.0" and "type" not in files[f"{root}/metadata.yaml"]
    db = files[f"{root}/databases/{DATABASE_NAME}.yaml"]
    assert db["sqlalchemy_uri"] == serving_uri(tmp_path / "marts.duckdb")
    for flag in ("access_mode=read_only", "enable_external_access=false", "autoinstall_known_extensions=false",
                 "autoload_known_extensions=false"):
        assert flag in db["sqlalchemy_uri"]
    datasets = {f["table_name"]: f for n, f in files.items() if "/datasets/" in n}
    assert set(datasets) == set(SPEC.datasets)
    for name, ds in datasets.items():
        assert [c["column_name"] for c in ds["columns"]] == list(SPEC.datasets[name].columns)


def test_every_chart_has_a_query_context_and_sits_on_its_dashboard(tmp_path: Path):
    files = _bundle(tmp_path)
    charts = {f["uuid"]: f for n, f in files.items() if "/charts/" in n}
    assert len(charts) == sum(len(d.charts) for d in SPEC.dashboards.values())
    dataset_uuids = {object_uuid("dataset", name) for name in SPEC.datasets}
    for chart in charts.values():
        qc = json.loads(chart["query_context"])
        assert qc["queries"] and qc["form_data"]["viz_type"] == chart["viz_type"]
        assert chart["dataset_uuid"] in dataset_uuids
    placed = set()
    for name, dash in ((n, f) for n, f in files.items() if "/dashboards/" in n):
        nodes = [v for v in dash["position"].values() if isinstance(v, dict) and v.get("type") == "CHART"]
        assert all(isinstance(n["meta"]["chartId"], int) for n in nodes)
        placed |= {n["meta"]["uuid"] for n in nodes}
        filters = {f["name"]: f for f in dash["metadata"]["native_filter_configuration"]}
        assert filters["Study"]["targets"][0]["column"]["name"] == "study_id"
        assert filters["Site"]["targets"][0]["column"]["name"] == "site_id"
        assert filters["Site"]["cascadeParentIds"] == [filters["Study"]["id"]]
        for row in (v for v in dash["position"].values() if isinstance(v, dict) and v.get("type") == "ROW"):
            assert sum(dash["position"][c]["meta"]["width"] for c in row["children"]) <= 12, name
    assert placed == set(charts)


def test_availability_charts_show_only_their_own_dashboard(tmp_path: Path):
    files = _bundle(tmp_path)
    for dash in SPEC.dashboards.values():
        chart = next(f for n, f in files.items() if n.endswith(f"/charts/{dash.slug}__Data_availability.yaml"))
        query = json.loads(chart["query_context"])["queries"][0]
        assert {"col": "dashboard", "op": "==", "val": dash.slug} in query["filters"]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("wh") / "trialsynth.duckdb"
    counts = build_sample_warehouse(path, n_subjects=100)
    return path, counts


def test_publish_copies_marts_and_fills_missing_ones_with_placeholders(warehouse, tmp_path: Path):
    path, counts = warehouse
    report = publish(path, tmp_path / "serving" / "marts.duckdb")
    assert set(report.placeholders) == {"mart_imputation_delta", "mart_little_mcar"}
    con = duckdb.connect(str(tmp_path / "serving" / "marts.duckdb"), read_only=True)
    for mart, by_tenant in counts.items():
        assert con.execute(f"SELECT count(*) FROM {mart}").fetchone()[0] == sum(by_tenant.values())
    for mart in report.placeholders:
        cols = [r[0] for r in con.execute(f"DESCRIBE {mart}").fetchall()]
        assert cols == list(SPEC.datasets[mart].columns)
        assert con.execute(f"SELECT count(*) FROM {mart}").fetchone()[0] == 0
    status = dict(con.execute(
        f"SELECT source, status FROM {AVAILABILITY_DATASET} WHERE tenant_id = 'cdisc' AND dashboard = 'rbqm'").fetchall())
    assert status["domain dv"] == NOT_AVAILABLE and status["domain ae"] == "available"
    assert status["mart_kri_qtl"] == "available"
    sites = con.execute("SELECT count(*) FROM serving_study_sites WHERE tenant_id = 'acme'").fetchone()[0]
    assert sites == con.execute("SELECT count(DISTINCT site_id) FROM mart_missingness WHERE tenant_id = 'acme'").fetchone()[0]


def test_publish_conforms_a_mart_with_other_types_or_missing_columns(tmp_path: Path):
    wh = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(wh))
    con.execute("CREATE TABLE mart_safety AS SELECT 'acme' AS tenant_id, 'S1' AS study_id, 'SOC A' AS soc, "
                "'PBO' AS arm, sum(x)::HUGEINT AS n_events FROM range(3) t(x)")
    con.close()
    publish(wh, tmp_path / "marts.duckdb")
    out = duckdb.connect(str(tmp_path / "marts.duckdb"), read_only=True)
    types = dict(out.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'mart_safety'").fetchall())
    assert types["n_events"] == "BIGINT" and types["median_days_to_report"] == "DOUBLE"
    assert out.execute("SELECT n_events, hlgt FROM mart_safety").fetchall() == [(3, None)]


def test_publish_swaps_atomically_and_open_readers_keep_the_old_file(warehouse, tmp_path: Path):
    path, _ = warehouse
    serving = tmp_path / "marts.duckdb"
    publish(path, serving)
    reader = duckdb.connect(str(serving), read_only=True)
    before = reader.execute("SELECT count(*) FROM mart_kri_qtl").fetchone()[0]
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    publish(empty, serving)
    assert reader.execute("SELECT count(*) FROM mart_kri_qtl").fetchone()[0] == before > 0
    # a new process (as a Superset query opening the file afresh) sees the new file
    fresh = subprocess.run([sys.executable, "-c", "import duckdb, sys; print(duckdb.connect(sys.argv[1], read_only=True)"
                            ".execute('SELECT count(*) FROM mart_kri_qtl').fetchone()[0])", str(serving)],
                           capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == "0"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_publish_leaves_the_serving_file_alone_while_a_writer_holds_the_warehouse(tmp_path: Path):
    wh, serving = tmp_path / "wh.duckdb", tmp_path / "marts.duckdb"
    duckdb.connect(str(wh)).close()
    publish(wh, serving)
    before = serving.stat().st_ino
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(60)", str(wh)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WarehouseBusyError):
            publish(wh, serving, retries=1, wait_s=0.1)
    finally:
        holder.kill()
        holder.wait()
    assert serving.stat().st_ino == before


def test_rls_rules_name_a_role_user_and_tenant_clause_per_tenant():
    rules = load_rules()
    assert {t.tenant for t in rules.tenants} == {"acme", "cdisc"}
    assert rules.clause_for("acme") == "tenant_id = 'acme'"
    assert len({t.role for t in rules.tenants}) == len({t.user for t in rules.tenants}) == 2


def test_rls_rules_reject_a_tenant_name_that_could_inject_sql(tmp_path: Path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("clause: \"tenant_id = '{tenant}'\"\ntenants:\n  - {tenant: \"x' OR '1'='1\", role: r, user: u}\n")
    with pytest.raises(ValueError, match="tenant"):
        load_rules(bad)


def test_passwords_are_generated_once_stored_private_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TS_TEST_PW", raising=False)
    first = stored_password("admin", "TS_TEST_PW", home=tmp_path)
    assert len(first) >= 16 and stored_password("admin", "TS_TEST_PW", home=tmp_path) == first
    assert stat.S_IMODE(os.stat(tmp_path / "admin_password").st_mode) == 0o600
    monkeypatch.setenv("TS_TEST_PW", "from-env")
    assert stored_password("admin", "TS_TEST_PW", home=tmp_path) == "from-env"
    assert stored_password("other", home=tmp_path) != first
