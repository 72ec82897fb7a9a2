"""Dashboards-as-code bundle, serving-file publish and RLS rules, without a running Superset."""

from __future__ import annotations

import functools
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


def test_spec_lists_seven_dashboards_on_marts_with_tenant_and_study():
    assert len(SPEC.dashboards) == 7
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
        assert [c["column_name"] for c in ds["columns"]] == list(SPEC.datasets[name].all_columns)


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
        for name, column in (("Site", "site_id"), ("CRO", "cro_name")):
            if name in filters:
                assert filters[name]["targets"][0]["column"]["name"] == column
                assert filters[name]["cascadeParentIds"] == [filters["Study"]["id"]]
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
        assert cols == list(SPEC.datasets[mart].all_columns)
        assert con.execute(f"SELECT count(*) FROM {mart}").fetchone()[0] == 0
    status = dict(con.execute(
        f"SELECT source, status FROM {AVAILABILITY_DATASET} WHERE tenant_id = 'cdisc' AND dashboard = 'rbqm'").fetchall())
    assert status["domain dv"] == NOT_AVAILABLE and status["domain ae"] == "available"
    assert status["mart_kri_qtl"] == "available"
    # display columns are served as columns: a study without CROs says so, HLGTs never NULL
    assert con.execute("SELECT DISTINCT cro_name FROM mart_kri_qtl WHERE tenant_id = 'cdisc'").fetchall() == [("no CRO",)]
    assert con.execute("SELECT count(*) FROM mart_safety WHERE hlgt_name IS NULL").fetchone()[0] == 0
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


# --------------------------------------------------------------------------- what analysts read (issue 14)
@functools.cache
def _files() -> dict[str, dict]:
    return _bundle(Path("/nonexistent/serving"))


def _charts(tmp_path: Path, slug: str) -> dict[str, dict]:
    files = _files()
    return {f["slice_name"]: f for n, f in files.items() if f"/charts/{slug}__" in n}


def _dashboard(tmp_path: Path, slug: str) -> dict:
    return next(f for n, f in _files().items() if n.endswith(f"/dashboards/{slug}.yaml"))


def _datasets(tmp_path: Path) -> dict[str, dict]:
    return {f["table_name"]: f for n, f in _files().items() if "/datasets/" in n}


def test_every_dashboard_colours_statuses_the_same_way(tmp_path: Path):
    from infra.superset.spec import STATUS_COLOURS

    red, amber, green = STATUS_COLOURS["fail"], STATUS_COLOURS["warn"], STATUS_COLOURS["pass"]
    assert len({red, amber, green}) == 3
    for slug in SPEC.dashboards:
        colours = _dashboard(tmp_path, slug)["metadata"]["label_colors"]
        assert colours["fail"] == colours["FAIL"] == colours["ALARM"] == colours["BREACHED"] == red
        assert colours["warn"] == colours["WARN"] == amber
        assert colours["pass"] == colours["PASS"] == colours["OK"] == colours["WITHIN LIMIT"] == green
    # the leaderboard's series are the written-out statuses, so they take those colours
    bar = _charts(tmp_path, "wasserstein")["Distance by variable"]
    assert bar["params"]["groupby"] == ["alert_status"]
    status_sql = SPEC.datasets["mart_wasserstein"].calculated["alert_status"][0]
    assert status_sql == "upper(alert_level)"


def test_status_tables_colour_the_status_cell_and_say_the_status_in_words(tmp_path: Path):
    from infra.superset.spec import STATUS_COLOURS

    for slug, chart, column in (("rbqm", "Flagged KRIs", "flag_status"), ("rbqm", "Study QTL status", "qtl_status"),
                                ("rbqm", "QTL breaches by site", "site_qtl_status"), ("wasserstein", "Leaderboard", "alert_status")):
        rules = _charts(tmp_path, slug)[chart]["params"]["conditional_formatting"]
        by_text = {r["targetValue"]: r["colorScheme"] for r in rules if r["column"] == column}
        assert by_text.get("FAIL", STATUS_COLOURS["fail"]) == STATUS_COLOURS["fail"]
        assert {"BREACHED", "ALARM", "FAIL"} <= set(by_text) and by_text["ALARM"] == STATUS_COLOURS["fail"]
        assert by_text["WARN"] == STATUS_COLOURS["warn"] and by_text["OK"] == by_text["PASS"] == STATUS_COLOURS["pass"]
        shown = _charts(tmp_path, slug)[chart]["params"]
        assert column in shown["all_columns"] + shown["groupby"]


def test_rbqm_kris_carry_their_unit_and_cro_is_never_null(tmp_path: Path):
    import duckdb as ddb

    from models.rbqm import KRIS

    ds = SPEC.datasets["mart_kri_qtl"]
    con = ddb.connect()
    con.execute("CREATE TABLE mart_kri_qtl (kri VARCHAR, kri_label VARCHAR, unit VARCHAR, rate DOUBLE, cro VARCHAR, "
                "flag VARCHAR, qtl_breached BOOLEAN)")
    con.executemany("INSERT INTO mart_kri_qtl VALUES (?, ?, ?, 0.25, NULL, 'alarm', true)",
                    [(k, k.replace("_", " "), u) for k, u in KRIS.items()])
    sql = {c: e for c, (e, _) in ds.calculated.items()}
    got = con.execute(f"SELECT kri, {sql['kri_name']}, {sql['site_rate']}, {sql['cro_name']}, {sql['flag_status']}, "
                      f"{sql['qtl_status']} FROM mart_kri_qtl").fetchall()
    for kri, name, rate, cro, flag, qtl in got:
        unit = KRIS[kri]
        expected = unit.replace("share of ", "% of ")
        assert name.endswith(f"({expected})"), name
        assert rate == (25.0 if unit.startswith("share") else 0.25)  # shares shown in %
        assert (cro, flag, qtl) == ("no CRO", "ALARM", "BREACHED")
    assert {u.replace("share of ", "% of ").split(" of ")[0] for u in KRIS.values()} >= {"%", "per 1,000 subject-days"}
    charts = _charts(tmp_path, "rbqm")
    assert charts["KRI |z| by site"]["params"]["groupby"] == "kri_name"  # the heatmap's axis states each unit
    for name in ("Flagged KRIs", "QTL breaches by site"):
        assert "kri_name" in charts[name]["params"]["groupby"] and "cro_name" in charts[name]["params"]["groupby"]
    assert charts["Sites beyond a QTL, by CRO"]["params"]["x_axis"] == "cro_name"
    filters = {f["name"]: f for f in _dashboard(tmp_path, "rbqm")["metadata"]["native_filter_configuration"]}
    assert list(filters) == ["Study", "Site", "CRO"]
    assert _dashboard(tmp_path, "rbqm")["metadata"]["cross_filters_enabled"] is True


def test_site_and_cro_filters_skip_study_wide_charts_which_say_so(tmp_path: Path):
    dash = _dashboard(tmp_path, "enrollment")
    position = {v["meta"]["chartId"]: v["meta"]["sliceName"] for v in dash["position"].values()
                if isinstance(v, dict) and v.get("type") == "CHART"}
    filters = {f["name"]: f for f in dash["metadata"]["native_filter_configuration"]}
    excluded = {position[i] for i in filters["Site"]["scope"]["excluded"]}
    assert excluded == {"Data availability", "Kaplan-Meier: time to discontinuation (study-wide)",
                        "Discontinuations by arm (study-wide)"}
    raw = yaml.safe_load(SPEC_PATH.read_text())
    raw["dashboards"]["enrollment"]["charts"][2]["name"] = "Kaplan-Meier"
    bad = tmp_path / "dashboards.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="study-wide"):
        load_spec(bad)


def test_safety_shows_names_and_percentages(tmp_path: Path):
    ds = _datasets(tmp_path)["mart_safety"]
    metrics = {m["metric_name"]: m for m in ds["metrics"]}
    assert metrics["serious_share"]["d3format"].endswith("%")
    assert "1.0 *" in metrics["serious_share"]["expression"]  # a ratio: d3's % multiplies by 100
    assert "hlgt_name" in {c["column_name"] for c in ds["columns"]}
    assert SPEC.datasets["mart_safety"].calculated["hlgt_name"][0].startswith("COALESCE(hlgt,")
    table = _charts(tmp_path, "safety")["AEs by SOC and HLGT"]["params"]
    assert table["groupby"] == ["study_id", "soc", "hlgt_name", "arm"]
    # a study without AE entry dates has no rows here: the chart says "not available", not empty axes
    days = _charts(tmp_path, "safety")["Mean days from onset to report"]
    assert {"col": "n_reported_with_date", "op": ">", "val": 0} in json.loads(days["query_context"])["queries"][0]["filters"]


def test_an_empty_chart_says_not_available_for_this_study(tmp_path: Path):
    from infra.superset.bundle import NOT_AVAILABLE_TEXT

    for slug in SPEC.dashboards:
        css = _dashboard(tmp_path, slug)["css"]
        assert f'content: "{NOT_AVAILABLE_TEXT}"' in css and "not available for this study" in NOT_AVAILABLE_TEXT.lower()


def test_design_has_one_power_chart_per_endpoint_type_with_80_and_90_percent_lines(tmp_path: Path):
    from models.design.scenarios import RECOMMENDATION_LABELS

    charts = _charts(tmp_path, "design")
    effect = {n: c for n, c in charts.items() if n.startswith("Power vs effect")}
    endpoints = []
    for chart in effect.values():
        filters = json.loads(chart["query_context"])["queries"][0]["filters"]
        [endpoint] = [f["val"] for f in filters if f["col"] == "endpoint"]
        endpoints.append(endpoint)
        lines = chart["params"]["annotation_layers"]
        assert sorted(float(a["value"]) for a in lines if a["annotationType"] == "FORMULA") == [0.8, 0.9]
        assert chart["params"]["x_axis_title"] and chart["params"]["show_legend"]
    assert sorted(endpoints) == ["binary", "continuous", "tte"]
    metrics = {m["metric_name"]: m for m in _datasets(tmp_path)["mart_power_curves"]["metrics"]}
    # Superset labels N per arm exactly as the CLI and the Dagster metadata do
    assert metrics["analysable_n_control"]["verbose_name"] == RECOMMENDATION_LABELS["n_per_arm_control"]
    assert metrics["enrol_n_control"]["verbose_name"] == RECOMMENDATION_LABELS["enrol_control"]
    assert metrics["enrol_n_treatment"]["verbose_name"] == RECOMMENDATION_LABELS["enrol_treatment"]
    assert metrics["enrol_n_control"]["expression"] == "MAX(recommended_n_per_arm)"  # mart: enrol_control


def test_missingness_counts_scheduled_visits_only_and_labels_axes(tmp_path: Path):
    ds = SPEC.datasets["mart_missingness"]
    assert "is_scheduled" in ds.metrics["pct_missing_scheduled"]
    heat = _charts(tmp_path, "missingness")["% missing (scheduled visits): variable x visit number"]
    assert {"col": "is_scheduled", "op": "IS TRUE"} in json.loads(heat["query_context"])["queries"][0]["filters"]
    assert heat["params"]["groupby"] == "variable_label" and heat["params"]["y_axis_format"] == ".1%"
    assert ds.calculated["variable_label"][0].startswith("concat(upper(domain)")  # rows grouped by domain
    trend = _charts(tmp_path, "missingness")["Cumulative % missing by data-entry week (study-wide)"]["params"]
    assert trend["x_axis_time_format"] == "%Y-%m-%d" and trend["x_axis_title"] and trend["y_axis_title"]
    assert "scheduled" in SPEC.datasets["mart_missingness_trend"].metrics["cum_pct_missing_scheduled"]


def test_enrollment_funnel_shows_counts(tmp_path: Path):
    funnel = _charts(tmp_path, "enrollment")["Site activation funnel (sites)"]["params"]
    assert funnel["label_type"] == "key_value"
    burn = _charts(tmp_path, "enrollment")["Enrollment burn-down: actual vs target"]["params"]
    assert burn["metrics"] == ["actual_cumulative", "target_cumulative"]


def test_the_missingness_rule_matches_the_dagster_study_matrix_rule():
    """mart_missingness.is_scheduled uses SCHEDULED_SHARE of assets/study_data.py (the default of
    the dbt var) on the same ratio: observed / expected subject-visits at the visit, study-wide."""
    import re

    sql = (SPEC_PATH.parents[1] / "dbt_project" / "models" / "marts" / "mart_missingness.sql").read_text()
    share = float(re.search(r"var\('missingness_scheduled_share', ([0-9.]+)\)", sql).group(1))
    source = (SPEC_PATH.parents[1] / "assets" / "study_data.py").read_text()
    assert share == float(re.search(r"SCHEDULED_SHARE = ([0-9.]+)", source).group(1))


def test_closest_imputation_drill_down_shows_donors_and_closest_records(tmp_path: Path):
    charts = _charts(tmp_path, "closest")
    bar = charts["Filled cells by variable (click to see their donors)"]
    donors = charts["Donors of each filled cell"]
    # clicking a variable's bar cross-filters the donors table (same dataset, cross-filtering on)
    assert bar["dataset_uuid"] == donors["dataset_uuid"] == object_uuid("dataset", "mart_imputation_donors")
    assert _dashboard(tmp_path, "closest")["metadata"]["cross_filters_enabled"] is True
    assert {"usubjid", "visit", "variable", "filled_value", "donor_rank", "donor_usubjid", "donor_visit", "distance",
            "donor_value", "weight"} <= set(donors["params"]["all_columns"])
    closest = charts["Closest real records of each synthetic row"]["params"]
    assert {"synthetic_row", "rank", "real_row", "distance", "holdout_p5", "privacy_status"} <= set(closest["all_columns"])
    assert any(r["targetValue"] == "FAIL" for r in closest["conditional_formatting"])
    # the marts behind it are dbt models with the same columns
    marts = SPEC_PATH.parents[1] / "dbt_project" / "models" / "marts"
    for mart in ("mart_imputation_donors", "mart_closest_records"):
        sql = (marts / f"{mart}.sql").read_text().lower()
        for column in SPEC.datasets[mart].columns:
            assert f" as {column}," in sql or f"    {column}," in sql or f" as {column}\n" in sql, (mart, column)
