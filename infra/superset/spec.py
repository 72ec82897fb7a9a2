"""Load and validate ``superset_config/dashboards.yaml``: datasets (columns, saved metrics) and the
charts of each dashboard. Plain Python + PyYAML so both virtualenvs can import it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "superset_config" / "dashboards.yaml"
CHART_KINDS = {"table", "heatmap", "line", "scatter", "bar", "big_number", "funnel", "pie"}
REQUIRED_COLUMNS = ("tenant_id", "study_id")
AVAILABILITY_DATASET = "serving_dashboard_availability"
# Status colours, the same on every dashboard and chart: fail red, warn amber, pass green, no verdict
# grey. Every status is also written out (FAIL / WARN / PASS ...) so it reads without colour.
STATUS_COLOURS = {"fail": "#D32F2F", "warn": "#F9A825", "pass": "#2E7D32", "none": "#9E9E9E"}
STATUS_LABELS = {
    "fail": ("fail", "FAIL", "alarm", "ALARM", "BREACHED"),
    "warn": ("warn", "WARN"),
    "pass": ("pass", "PASS", "ok", "OK", "WITHIN LIMIT"),
    "none": ("insufficient", "TOO FEW DATA"),
}
STUDY_WIDE = "(study-wide)"  # in the name of a chart the Site and CRO filters cannot apply to


@dataclass(frozen=True)
class Dataset:
    """``columns``: the mart's columns (name -> type); ``calculated``: display columns the publish step
    adds to the served table or view (name -> (SQL read by DuckDB and ClickHouse alike, type)), so
    Superset sees them as plain columns everywhere (raw tables, Samples, filters; Superset 6.1 reads
    a calculated column of a raw table as a physical name on ClickHouse); ``metrics``: name -> SQL aggregate;
    ``formats``: metric or column -> d3 number format; ``labels``: column or metric -> the name
    people read in tables, legends and filters."""

    name: str
    columns: dict[str, str]
    metrics: dict[str, str] = field(default_factory=dict)
    serving: bool = False
    calculated: dict[str, tuple[str, str]] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def all_columns(self) -> dict[str, str]:
        """Physical and calculated columns, name -> type."""
        return {**self.columns, **{c: t for c, (_, t) in self.calculated.items()}}


@dataclass(frozen=True)
class Chart:
    dashboard: str
    name: str
    kind: str
    dataset: str
    options: dict[str, Any]

    @property
    def width(self) -> int:
        return int(self.options.get("width", 6))

    def referenced_columns(self) -> list[str]:
        o = self.options
        cols = [o.get("x"), o.get("y"), *o.get("groupby", []), *o.get("columns", []), *(f[0] for f in o.get("filters", [])),
                o.get("status_column")]
        return [c for c in cols if c]

    def referenced_metrics(self) -> list[str]:
        return [m for m in [*self.options.get("metrics", []), self.options.get("metric")] if m]


@dataclass(frozen=True)
class Dashboard:
    slug: str
    title: str
    description: str
    requires_domains: list[str]
    charts: list[Chart]

    @property
    def marts(self) -> list[str]:
        """The dbt marts behind the dashboard's charts, in first-use order."""
        return list(dict.fromkeys(c.dataset for c in self.charts if c.dataset.startswith("mart_")))


@dataclass(frozen=True)
class Spec:
    datasets: dict[str, Dataset]
    dashboards: dict[str, Dashboard]


def load_spec(path: Path = SPEC_PATH) -> Spec:
    """Parse and validate the spec; raises ValueError naming the offending dataset/chart/column."""
    raw = yaml.safe_load(Path(path).read_text())
    datasets = {}
    for name, d in raw["datasets"].items():
        metrics, formats = {}, dict(d.get("formats") or {})
        labels = dict(d.get("labels") or {})
        for metric, m in (d.get("metrics") or {}).items():
            if isinstance(m, dict):  # {sql, format, label}
                metrics[metric] = m["sql"]
                formats.update({metric: m["format"]} if "format" in m else {})
                labels.update({metric: m["label"]} if "label" in m else {})
            else:
                metrics[metric] = m
        calculated = {c: (v["sql"], v["type"]) for c, v in (d.get("calculated") or {}).items()}
        datasets[name] = Dataset(name, dict(d["columns"]), metrics, bool(d.get("serving", False)), calculated,
                                 formats, labels)
    dashboards = {}
    for slug, d in raw["dashboards"].items():
        charts = [Chart(slug, c["name"], c["kind"], c["dataset"],
                        {k: v for k, v in c.items() if k not in ("name", "kind", "dataset")}) for c in d["charts"]]
        dashboards[slug] = Dashboard(slug, d["title"], d.get("description", ""), list(d.get("requires_domains") or []),
                                     charts)
    spec = Spec(datasets, dashboards)
    _validate(spec)
    return spec


def _validate(spec: Spec) -> None:
    for ds in spec.datasets.values():
        missing = [c for c in REQUIRED_COLUMNS if c not in ds.columns]
        if missing:
            raise ValueError(f"dataset {ds.name}: columns must include {missing} (row-level security filters on them)")
    if AVAILABILITY_DATASET not in spec.datasets:
        raise ValueError(f"datasets: {AVAILABILITY_DATASET} is required (it drives 'not available for this study')")
    for dash in spec.dashboards.values():
        if not dash.charts:
            raise ValueError(f"dashboard {dash.slug}: no charts")
        has_sites = any("site_id" in spec.datasets[c.dataset].columns for c in dash.charts
                        if c.dataset in spec.datasets and c.dataset != AVAILABILITY_DATASET)
        for chart in dash.charts:
            where = f"dashboard {dash.slug}, chart {chart.name!r}"
            if chart.kind not in CHART_KINDS:
                raise ValueError(f"{where}: kind {chart.kind!r} is not one of {sorted(CHART_KINDS)}")
            if chart.dataset not in spec.datasets:
                raise ValueError(f"{where}: dataset {chart.dataset!r} is not declared under datasets")
            ds = spec.datasets[chart.dataset]
            unknown = [c for c in chart.referenced_columns() if c not in ds.all_columns]
            if unknown:
                raise ValueError(f"{where}: columns {unknown} are not columns of {ds.name}")
            unknown = [m for m in chart.referenced_metrics() if m not in ds.metrics]
            if unknown:
                raise ValueError(f"{where}: metrics {unknown} are not saved metrics of {ds.name}")
            _check_alias_shadowing(where, chart.referenced_metrics(), ds)
            if not 1 <= chart.width <= 12:
                raise ValueError(f"{where}: width must be 1..12, got {chart.width}")
            if has_sites and chart.dataset != AVAILABILITY_DATASET and "site_id" not in ds.columns \
                    and STUDY_WIDE not in chart.name:
                raise ValueError(f"{where}: its dataset has no site_id, so the Site filter cannot apply: "
                                 f"say {STUDY_WIDE!r} in its name")
    for ds in spec.datasets.values():
        for name, sql in [*ds.metrics.items(), *((c, sql) for c, (sql, _) in ds.calculated.items())]:
            if sql.count("(") != sql.count(")"):
                raise ValueError(f"dataset {ds.name}: {name} has unbalanced parentheses (quote SQL with commas "
                                 f"in YAML flow mappings): {sql!r}")
        clash = sorted(set(ds.calculated) & (set(ds.columns) | set(ds.metrics)))
        if clash:
            raise ValueError(f"dataset {ds.name}: calculated columns {clash} are named like a column or metric")


def _check_alias_shadowing(where: str, metrics: list[str], ds: Dataset) -> None:
    """Refuse a chart whose metric is named like a column another of its metrics reads: Superset
    selects ``SUM(x) AS x, SUM(x) / SUM(y) AS share``, and ClickHouse resolves the second ``x`` to the
    alias (an aggregate inside an aggregate); DuckDB reads the column. Same numbers need other names."""
    for name in metrics:
        if name not in ds.columns:
            continue
        readers = [m for m in metrics if m != name and re.search(rf"\b{re.escape(name)}\b", ds.metrics[m])]
        if readers:
            raise ValueError(f"{where}: metric {name!r} is named like a column that metric(s) {readers} read; "
                             "ClickHouse would read the metric's alias there: rename the metric")
