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


@dataclass(frozen=True)
class Dataset:
    name: str
    columns: dict[str, str]
    metrics: dict[str, str] = field(default_factory=dict)
    serving: bool = False


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
        cols = [o.get("x"), o.get("y"), *o.get("groupby", []), *o.get("columns", []), *(f[0] for f in o.get("filters", []))]
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
    datasets = {
        name: Dataset(name, dict(d["columns"]), dict(d.get("metrics") or {}), bool(d.get("serving", False)))
        for name, d in raw["datasets"].items()
    }
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
        for chart in dash.charts:
            where = f"dashboard {dash.slug}, chart {chart.name!r}"
            if chart.kind not in CHART_KINDS:
                raise ValueError(f"{where}: kind {chart.kind!r} is not one of {sorted(CHART_KINDS)}")
            if chart.dataset not in spec.datasets:
                raise ValueError(f"{where}: dataset {chart.dataset!r} is not declared under datasets")
            ds = spec.datasets[chart.dataset]
            unknown = [c for c in chart.referenced_columns() if c not in ds.columns]
            if unknown:
                raise ValueError(f"{where}: columns {unknown} are not columns of {ds.name}")
            unknown = [m for m in chart.referenced_metrics() if m not in ds.metrics]
            if unknown:
                raise ValueError(f"{where}: metrics {unknown} are not saved metrics of {ds.name}")
            _check_alias_shadowing(where, chart.referenced_metrics(), ds)
            if not 1 <= chart.width <= 12:
                raise ValueError(f"{where}: width must be 1..12, got {chart.width}")


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
