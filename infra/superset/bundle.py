"""Turn ``superset_config/dashboards.yaml`` into a Superset import bundle (a zip).

Layout (Superset's v1 import format): one top-level folder with ``metadata.yaml`` (version 1.0.0,
no ``type``), ``databases/``, ``datasets/<db>/`` (every column listed, saved metrics), ``charts/``
(``params`` = the explore form data the browser renders from, ``query_context`` = what the
chart-data API runs) and ``dashboards/`` (position tree + native filters for study and site).
UUIDs are derived from names, so re-importing overwrites the same objects instead of adding new ones.

The database is the served warehouse (:mod:`infra.superset.warehouse`): the read-only DuckDB serving
file, or ClickHouse's serving database through ``clickhousedb://`` with the password masked (the
importer takes it beside the bundle, see :func:`bundle_passwords`).

Run: ``python -m infra.superset.bundle --out bundle.zip [--serving data/serving/marts.duckdb]``.
"""

from __future__ import annotations

import argparse
import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import yaml

from infra.superset.spec import (
    AVAILABILITY_DATASET,
    STATUS_COLOURS,
    STATUS_LABELS,
    Chart,
    Dashboard,
    Dataset,
    Spec,
    load_spec,
)
from infra.superset.warehouse import ServedWarehouse, current

DATABASE_NAME = "trialsynth_marts"
SITES_DATASET = "serving_study_sites"
CRO_DATASET, CRO_COLUMN = "mart_kri_qtl", "cro_name"  # every site of a study, "no CRO" where it has none
NOT_AVAILABLE_TEXT = "Not available for this study (no rows for the current filters)"
# Superset's empty state says "No results were returned for this query" with no per-chart setting;
# on our dashboards it says what it means. The original text stays in the DOM, hidden.
EMPTY_STATE_CSS = (
    '.dashboard-component-chart-holder [role="img"][aria-label="empty"] + div > p:first-child '
    "{font-size: 0 !important;}\n"
    '.dashboard-component-chart-holder [role="img"][aria-label="empty"] + div > p:first-child::after '
    f'{{content: "{NOT_AVAILABLE_TEXT}"; font-size: 14px;}}\n')
DATE_FORMAT = "%Y-%m-%d"
DEFAULT_LABELS = {"tenant_id": "tenant", "study_id": "study", "site_id": "site", "cro": "CRO (as recorded)"}
_NAMESPACE = uuid.UUID("6f1d3c1e-2f7a-4b8e-9a55-7f4e0c2d9b10")
_VERSION = "1.0.0"
_ROW_LIMIT = 10000
_TEMPORAL_TYPES = ("DATE", "TIMESTAMP")


def object_uuid(kind: str, name: str) -> str:
    """Stable UUID of a bundle object (``kind`` = database/dataset/chart/dashboard)."""
    return str(uuid.uuid5(_NAMESPACE, f"trialsynth/{kind}/{name}"))


def chart_uuid(chart: Chart) -> str:
    return object_uuid("chart", f"{chart.dashboard}/{chart.name}")


def managed_uuids(spec: Spec) -> dict[str, set[str]]:
    """UUIDs of the charts and dashboards the bundle manages (``is_managed_externally``)."""
    return {"chart": {chart_uuid(c) for d in spec.dashboards.values() for c in d.charts},
            "dashboard": {object_uuid("dashboard", slug) for slug in spec.dashboards}}


def serving_uri(serving_path: Path) -> str:
    """SQLAlchemy URI of the serving DuckDB file: read-only, no file/network access, no extensions."""
    return (f"duckdb:///{Path(serving_path).resolve()}?access_mode=read_only&enable_external_access=false"
            "&autoinstall_known_extensions=false&autoload_known_extensions=false")


def database_uri(warehouse: ServedWarehouse) -> str:
    """The bundle's URI of the served warehouse (a ClickHouse password masked)."""
    return serving_uri(Path(warehouse.serving_path)) if warehouse.target == "duckdb" else warehouse.clickhouse_uri()


def bundle_passwords(warehouse: ServedWarehouse) -> dict[str, str]:
    """The ``passwords`` of the import request: the ClickHouse password by database file."""
    if warehouse.target == "duckdb":
        return {}
    return {f"databases/{DATABASE_NAME}.yaml": warehouse.clickhouse_password()}


def database_config(warehouse: ServedWarehouse) -> dict[str, Any]:
    return {
        "database_name": DATABASE_NAME, "sqlalchemy_uri": database_uri(warehouse), "cache_timeout": None,
        "expose_in_sqllab": True, "allow_run_async": False, "allow_ctas": False, "allow_cvas": False,
        "allow_dml": False, "allow_file_upload": False, "extra": {"allows_virtual_table_explore": True},
        "uuid": object_uuid("database", DATABASE_NAME), "version": _VERSION,
    }


def dataset_config(ds: Dataset, schema: str = "main") -> dict[str, Any]:
    temporal = [c for c, t in ds.columns.items() if t.upper().startswith(_TEMPORAL_TYPES)]
    return {
        "table_name": ds.name, "schema": schema, "main_dttm_col": temporal[0] if temporal else None,
        "description": None, "default_endpoint": None, "offset": 0, "cache_timeout": None, "sql": None,
        "params": None, "template_params": None, "filter_select_enabled": True, "fetch_values_predicate": None,
        "extra": None, "normalize_columns": False, "always_filter_main_dttm": False,
        "uuid": object_uuid("dataset", ds.name), "version": _VERSION,
        "database_uuid": object_uuid("database", DATABASE_NAME),
        "columns": [{"column_name": c, "type": t, "is_dttm": c in temporal, "is_active": True, "groupby": True,
                     "filterable": True, "expression": None,
                     "verbose_name": ds.labels.get(c, DEFAULT_LABELS.get(c)), "description": None,
                     "python_date_format": None, "extra": {}} for c, t in ds.all_columns.items()],
        "metrics": [{"metric_name": m, "verbose_name": ds.labels.get(m, m.replace("_", " ")), "metric_type": None,
                     "expression": e, "description": None, "d3format": ds.formats.get(m), "extra": {},
                     "warning_text": None} for m, e in ds.metrics.items()],
    }


def _filters(chart: Chart) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(adhoc_filters for the form data, filters for the query context) of ``chart.options['filters']``;
    a chart on the availability table only shows its own dashboard's rows."""
    adhoc, query = [], []
    filters = list(chart.options.get("filters", []))
    if chart.dataset == AVAILABILITY_DATASET:
        filters.append(["dashboard", "==", chart.dashboard])
    for i, (col, op, val) in enumerate(filters):
        adhoc.append({"expressionType": "SIMPLE", "subject": col, "operator": op, "comparator": val,
                      "clause": "WHERE", "isExtra": False, "sqlExpression": None,
                      "filterOptionName": f"filter_{chart.dashboard}_{i}"})
        query.append({"col": col, "op": op, **({} if val is None else {"val": val})})
    return adhoc, query


def _status_formatting(column: str) -> list[dict[str, Any]]:
    """Table conditional formatting: the cell of ``column`` in its status colour (the text itself
    says the status, so it also reads without colour)."""
    return [{"column": column, "operator": "containing", "targetValue": label, "colorScheme": STATUS_COLOURS[status],
             "useGradient": False} for status, labels in STATUS_LABELS.items() for label in labels if label.isupper()]


def _reference_lines(values: list[float]) -> list[dict[str, Any]]:
    """Formula annotation layers: a dashed horizontal line at each value (e.g. power 0.8 and 0.9)."""
    return [{"name": f"{v:g} reference", "annotationType": "FORMULA", "sourceType": "", "value": f"{v:g}",
             "overrides": {}, "show": True, "showLabel": True, "showMarkers": False, "hideLine": False,
             "titleColumn": "", "descriptionColumns": [], "timeColumn": "", "intervalEndColumn": "",
             "color": "#555555", "opacity": "", "style": "dashed", "width": 1} for v in values]


def _format(ds: Dataset, name: str | None, default: str = "SMART_NUMBER") -> str:
    return ds.formats.get(name or "", default)


def _form_and_query(chart: Chart, ds: Dataset) -> tuple[dict[str, Any], dict[str, Any]]:
    """Explore form data and the matching chart-data query for each chart kind."""
    o = chart.options
    metrics, groupby = list(o.get("metrics", [])), list(o.get("groupby", []))
    metric = o.get("metric")
    row_limit = int(o.get("row_limit", _ROW_LIMIT))
    columns = ds.all_columns
    if chart.kind == "table":
        raw = "columns" in o
        order = o.get("order_by")
        shown = list(o["columns"]) if raw else [*groupby, *metrics]
        form = {"viz_type": "table", "query_mode": "raw" if raw else "aggregate", "groupby": groupby,
                "metrics": metrics, "all_columns": list(o.get("columns", [])), "percent_metrics": [],
                "order_by_cols": [json.dumps([order, bool(o.get("order_asc", False))])] if raw and order else [],
                "timeseries_limit_metric": order if order and not raw else None, "order_desc": True,
                "server_pagination": False, "server_page_length": 10, "table_timestamp_format": DATE_FORMAT,
                "show_cell_bars": False, "color_pn": True, "allow_render_html": False,
                "column_config": {c: {"d3NumberFormat": _format(ds, c, ",.4~r")} for c in shown
                                  if c in ds.formats or columns.get(c, "").upper() == "DOUBLE"},
                "conditional_formatting": _status_formatting(o["status_column"]) if "status_column" in o else []}
        query = {"columns": shown if raw else groupby, "metrics": [] if raw else metrics,
                 "orderby": [[order, o.get("order_asc", False)]] if order else ([[metrics[0], False]] if metrics else [])}
    elif chart.kind == "heatmap":
        form = {"viz_type": "heatmap_v2", "x_axis": o["x"], "groupby": o["y"], "metric": metric,
                "sort_x_axis": "alpha_asc", "sort_y_axis": "alpha_asc", "normalize_across": "heatmap",
                "linear_color_scheme": "superset_seq_1", "xscale_interval": -1, "yscale_interval": -1,
                "left_margin": "auto", "bottom_margin": "auto", "legend_type": "continuous", "show_legend": True,
                "show_percentage": False, "show_values": False, "y_axis_format": _format(ds, metric, ".3~g"),
                "x_axis_time_format": DATE_FORMAT, "value_bounds": [None, None]}
        query = {"columns": [o["x"], o["y"]], "metrics": [metric], "orderby": [[o["x"], True], [o["y"], True]]}
    elif chart.kind in ("line", "scatter", "bar"):
        temporal = columns[o["x"]].upper().startswith(_TEMPORAL_TYPES)
        form = {"x_axis": o["x"], "metrics": metrics, "groupby": groupby, "order_desc": True,
                "truncate_metric": True, "show_legend": True, "legendType": "plain", "legendOrientation": "top",
                "rich_tooltip": True, "y_axis_format": _format(ds, metrics[0]), "x_axis_time_format": DATE_FORMAT,
                "tooltipTimeFormat": DATE_FORMAT, "comparison_type": "values",
                "annotation_layers": _reference_lines(o.get("reference_lines", [])), "sort_series_type": "sum",
                "x_axis_title": o.get("x_title", ds.labels.get(o["x"], "")), "x_axis_title_margin": 30,
                "y_axis_title": o.get("y_title", ds.labels.get(metrics[0], "")), "y_axis_title_margin": 50,
                "y_axis_title_position": "Left", "truncateYAxis": False}
        if temporal:
            form["time_grain_sqla"] = o.get("time_grain", "P1D")
        if "y_bounds" in o:
            form.update({"y_axis_bounds": list(o["y_bounds"]), "truncateYAxis": True})
        if chart.kind == "scatter":
            # points, not lines: Superset draws one series per group on the union of all groups'
            # x values and breaks a line wherever its group has no row at another group's x
            form.update({"viz_type": "echarts_timeseries_scatter", "markerEnabled": True, "markerSize": 5,
                         "x_axis_sort_asc": True})
        elif chart.kind == "line":
            form.update({"viz_type": "echarts_timeseries_line", "x_axis_sort_asc": True, "markerEnabled": True,
                         "markerSize": 4})
        else:
            form.update({"viz_type": "echarts_timeseries_bar",
                         "orientation": "horizontal" if o.get("horizontal") else "vertical",
                         "stack": "Stack" if o.get("stacked") else None, "show_value": bool(o.get("show_value"))})
            if o.get("horizontal") and "x_title" not in o:
                # the category axis is vertical there, its long names leave no room for a title:
                # the chart's name says what the bars are
                form["x_axis_title"] = ""
            if not temporal:
                form.update({"x_axis_sort": metrics[0], "x_axis_sort_asc": False})
        x_col: Any = o["x"]
        if temporal:
            x_col = {"columnType": "BASE_AXIS", "sqlExpression": o["x"], "label": o["x"], "expressionType": "SQL",
                     "timeGrain": form["time_grain_sqla"]}
        query = {"columns": [x_col, *groupby], "metrics": metrics, "orderby": [[metrics[0], False]]}
    elif chart.kind == "big_number":
        form = {"viz_type": "big_number_total", "metric": metric, "subheader": o.get("subheader", ""),
                "y_axis_format": _format(ds, metric), "header_font_size": 0.4, "subheader_font_size": 0.15}
        query = {"columns": [], "metrics": [metric], "orderby": []}
    else:  # pie, funnel: labels show the name and the count (a funnel's stages are counts)
        form = {"viz_type": chart.kind, "groupby": groupby, "metric": metric, "sort_by_metric": True,
                "show_legend": True, "show_labels": True, "label_type": o.get("label_type", "key_value"),
                "number_format": _format(ds, metric)}
        if chart.kind == "pie":
            form.update({"donut": True, "labels_outside": True, "outerRadius": 70, "innerRadius": 30})
        query = {"columns": groupby, "metrics": [metric], "orderby": [[metric, False]]}
    adhoc, query_filters = _filters(chart)
    form.update({"adhoc_filters": adhoc, "row_limit": row_limit, "extra_form_data": {}, "dashboards": []})
    query.update({"filters": query_filters, "extras": {"having": "", "where": ""}, "applied_time_extras": {},
                  "annotation_layers": [], "row_limit": row_limit, "series_limit": 0, "order_desc": True,
                  "url_params": {}, "custom_params": {}, "custom_form_data": {}})
    return form, query


def chart_config(chart: Chart, ds: Dataset) -> dict[str, Any]:
    form, query = _form_and_query(chart, ds)
    dataset_uuid = object_uuid("dataset", ds.name)
    form["datasource"] = "0__table"  # replaced by the dataset's id on import
    query_context = {"datasource": {"id": 0, "type": "table"}, "force": False, "queries": [query],
                     "form_data": form, "result_format": "json", "result_type": "full"}
    return {"slice_name": chart.name, "description": None, "certified_by": None, "certification_details": None,
            "viz_type": form["viz_type"], "params": form, "query_context": json.dumps(query_context),
            "cache_timeout": None, "uuid": chart_uuid(chart), "version": _VERSION, "dataset_uuid": dataset_uuid,
            "is_managed_externally": True, "external_url": None}


def label_colours() -> dict[str, str]:
    """Series label -> status colour, for every dashboard (``label_colors`` of its metadata)."""
    return {label: STATUS_COLOURS[status] for status, labels in STATUS_LABELS.items() for label in labels}


def _native_filter(filter_id: str, name: str, column: str, dataset: str, parents: list[str],
                   excluded: list[int] | None = None) -> dict[str, Any]:
    return {"id": filter_id, "name": name, "filterType": "filter_select", "type": "NATIVE_FILTER",
            "targets": [{"column": {"name": column}, "datasetUuid": object_uuid("dataset", dataset)}],
            "controlValues": {"enableEmptyFilter": False, "defaultToFirstItem": False, "multiSelect": True,
                              "searchAllOptions": False, "inverseSelection": False},
            "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
            "cascadeParentIds": parents, "scope": {"rootPath": ["ROOT_ID"], "excluded": excluded or []},
            "description": "", "tabsInScope": []}


def dashboard_config(dash: Dashboard, spec: Spec) -> dict[str, Any]:
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": dash.title}},
    }
    rows: list[list[tuple[int, Chart]]] = []
    for i, chart in enumerate(dash.charts, start=1):
        if not rows or sum(c.width for _, c in rows[-1]) + chart.width > 12:
            rows.append([])
        rows[-1].append((i, chart))
    for r, row in enumerate(rows, start=1):
        row_id = f"ROW-{r}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {"type": "ROW", "id": row_id, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                            "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        for i, chart in row:
            chart_id = f"CHART-{i}"
            position[row_id]["children"].append(chart_id)
            # chartId: the id in this bundle; the importer maps it to the database id by uuid
            position[chart_id] = {"type": "CHART", "id": chart_id, "children": [],
                                  "parents": ["ROOT_ID", "GRID_ID", row_id],
                                  "meta": {"chartId": i, "width": chart.width, "height": int(chart.options.get("height", 50)), "sliceName": chart.name,
                                           "uuid": chart_uuid(chart)}}
    study = "NATIVE_FILTER-study"
    # a chart whose dataset lacks the column is out of that filter's scope (its name says study-wide)
    lacking = lambda col: [i for i, c in enumerate(dash.charts, start=1)  # noqa: E731
                           if col not in spec.datasets[c.dataset].all_columns]
    filters = [_native_filter(study, "Study", "study_id", AVAILABILITY_DATASET, [])]
    if len(lacking("site_id")) < len(dash.charts):
        filters.append(_native_filter("NATIVE_FILTER-site", "Site", "site_id", SITES_DATASET, [study], lacking("site_id")))
    if len(lacking(CRO_COLUMN)) < len(dash.charts):
        filters.append(_native_filter("NATIVE_FILTER-cro", "CRO", CRO_COLUMN, CRO_DATASET, [study], lacking(CRO_COLUMN)))
    metadata = {
        "native_filter_configuration": filters,
        "cross_filters_enabled": True, "color_scheme": "supersetColors", "refresh_frequency": 0,
        "expanded_slices": {}, "label_colors": label_colours(), "shared_label_colors": [],
        "timed_refresh_immune_slices": [], "default_filters": "{}", "chart_configuration": {},
        "global_chart_configuration": {"scope": {"rootPath": ["ROOT_ID"], "excluded": []}, "chartsInScope": []},
    }
    return {"dashboard_title": dash.title, "description": dash.description, "css": EMPTY_STATE_CSS, "slug": dash.slug,
            "uuid": object_uuid("dashboard", dash.slug), "position": position, "metadata": metadata,
            "version": _VERSION, "published": True, "certified_by": None, "certification_details": None,
            "is_managed_externally": True, "external_url": None}


def bundle_files(spec: Spec, warehouse: ServedWarehouse, root: str = "trialsynth_dashboards") -> dict[str, str]:
    """Every file of the bundle, path -> YAML text."""
    dump = lambda obj: yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)  # noqa: E731
    files = {f"{root}/metadata.yaml": dump({"version": _VERSION, "timestamp": "1970-01-01T00:00:00+00:00"}),
             f"{root}/databases/{DATABASE_NAME}.yaml": dump(database_config(warehouse))}
    for ds in spec.datasets.values():
        files[f"{root}/datasets/{DATABASE_NAME}/{ds.name}.yaml"] = dump(dataset_config(ds, warehouse.schema))
    for dash in spec.dashboards.values():
        for chart in dash.charts:
            slug = "".join(ch if ch.isalnum() else "_" for ch in chart.name).strip("_")
            files[f"{root}/charts/{dash.slug}__{slug}.yaml"] = dump(chart_config(chart, spec.datasets[chart.dataset]))
        files[f"{root}/dashboards/{dash.slug}.yaml"] = dump(dashboard_config(dash, spec))
    return files


def bundle_zip(spec: Spec, warehouse: ServedWarehouse) -> bytes:
    """The bundle as zip bytes, ready for ``POST /api/v1/assets/import/`` (with :func:`bundle_passwords`)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in bundle_files(spec, warehouse).items():
            zf.writestr(name, text)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serving", type=Path, help="DuckDB serving file the database points at (default: the settings' warehouse)")
    p.add_argument("--out", type=Path, required=True, help="zip file to write")
    args = p.parse_args(argv)
    warehouse = ServedWarehouse(serving_path=str(args.serving)) if args.serving else current()
    args.out.write_bytes(bundle_zip(load_spec(), warehouse))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
