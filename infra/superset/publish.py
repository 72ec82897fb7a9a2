"""Publish the marts to the read-only serving DuckDB file Superset reads.

A new file is built next to the serving file from the warehouse (attached read-only) and then
renamed over it (``os.replace``, atomic on POSIX), so Superset never sees a half-written file and a
dbt build holding the warehouse read-write never blocks dashboards: while the warehouse is locked the
publish retries, and if it stays locked the previous serving file keeps being served.

What the serving file holds:

* every ``mart_*`` table of the warehouse, sorted by tenant/study (DuckDB zone maps then skip other
  tenants' row groups), with the columns the dashboards spec declares cast to the declared type;
  a declared column the mart lacks is added as NULL, a declared mart the warehouse lacks becomes an
  empty placeholder table with the declared columns, so no chart errors; the spec's display columns
  (``calculated:``, e.g. a NULL CRO as "no CRO") are added, computed in SQL DuckDB and ClickHouse share;
* ``serving_study_sites``: distinct tenant/study/site of all marts (values of the Site filter);
* ``serving_dashboard_availability``: per tenant/study, dashboard and source (its marts and the
  bronze domains it needs, from ``mart_data_availability``) ``available`` or
  ``not available for this study``, with the row count.

With ``tenant`` (``--tenant T``) the file holds that tenant's rows only: every mart is copied
``WHERE tenant_id = T`` and a mart without ``tenant_id`` is withheld (an empty placeholder), so a
tenant's Superset database physically cannot return another tenant's rows, whatever SQL it runs
(issue 12; ``trialsynth.tenancy.serving.publish_tenants`` writes one file per tenant).

Run: ``python -m infra.superset.publish [--warehouse W] [--serving S] [--tenant T]`` (defaults from
``trialsynth.settings``: the dbt warehouse and ``data/serving/marts.duckdb``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from infra.superset.spec import AVAILABILITY_DATASET, Spec, load_spec

NOT_AVAILABLE = "not available for this study"
_LOCK_MARKERS = ("lock", "Conflicting")


class WarehouseBusyError(RuntimeError):
    """The warehouse stayed locked by a writer (a dbt build) for every retry."""


@dataclass
class PublishReport:
    serving_path: Path
    copied: dict[str, int] = field(default_factory=dict)  # mart -> rows
    placeholders: list[str] = field(default_factory=list)
    added_columns: dict[str, list[str]] = field(default_factory=dict)
    cast_columns: dict[str, list[str]] = field(default_factory=dict)  # mart -> ["col TYPE->TYPE"]
    withheld: list[str] = field(default_factory=list)  # marts without tenant_id, not in a tenant's file

    def lines(self) -> list[str]:
        out = [f"published {len(self.copied)} marts to {self.serving_path}"]
        out += [f"  {m}: {n:,} rows" for m, n in sorted(self.copied.items())]
        out += [f"  {m}: not in the warehouse, empty placeholder" for m in self.placeholders]
        out += [f"  {m}: columns {cols} missing in the warehouse, served as NULL" for m, cols in self.added_columns.items()]
        out += [f"  {m}: cast to the dashboards spec's types: {', '.join(c)}" for m, c in self.cast_columns.items()]
        out += [f"  {m}: no tenant_id column, withheld from this tenant's file" for m in self.withheld]
        return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _attach_warehouse(con: duckdb.DuckDBPyConnection, warehouse: Path, retries: int, wait_s: float) -> bool:
    """Attach the warehouse read-only as ``wh``; False when it does not exist yet."""
    if not warehouse.exists():
        return False
    for attempt in range(retries + 1):
        try:
            con.execute(f"ATTACH {duckdb_str(str(warehouse))} AS wh (READ_ONLY)")
            return True
        except duckdb.Error as exc:
            if not any(m in str(exc) for m in _LOCK_MARKERS):
                raise
            if attempt == retries:
                raise WarehouseBusyError(f"warehouse {warehouse} is locked by a writer: {exc}") from exc
            print(f"warehouse locked (a dbt build?), retry {attempt + 1}/{retries} in {wait_s:.0f} s", file=sys.stderr)
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def duckdb_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _warehouse_marts(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """mart name -> schema in the attached warehouse (``main`` preferred when a name repeats)."""
    rows = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_catalog = 'wh' AND starts_with(table_name, 'mart_') ORDER BY table_schema <> 'main'"
    ).fetchall()
    found: dict[str, str] = {}
    for schema, name in rows:
        found.setdefault(name, schema)
    return found


def _copy_mart(con: duckdb.DuckDBPyConnection, name: str, schema: str, declared: dict[str, str],
               report: PublishReport, tenant: str | None = None, calculated: dict[str, tuple[str, str]] | None = None) -> None:
    actual = {r[0]: r[1] for r in con.execute(f"DESCRIBE wh.{_q(schema)}.{_q(name)}").fetchall()}
    calculated = calculated or {}
    if tenant is not None and "tenant_id" not in actual:
        _create_empty(con, name, {**(declared or actual), **{c: t for c, (_, t) in calculated.items()}})
        report.withheld.append(name)
        return
    select = []
    for col, typ in actual.items():
        want = declared.get(col)
        if want and want.upper() != typ.upper():
            select.append(f"TRY_CAST({_q(col)} AS {want}) AS {_q(col)}")
            report.cast_columns.setdefault(name, []).append(f"{col} {typ}->{want}")
        elif typ.upper() == "HUGEINT" or typ.upper().startswith("DECIMAL"):
            # sums of integers are HUGEINT in DuckDB; the Superset driver stack handles BIGINT/DOUBLE
            select.append(f"CAST({_q(col)} AS {'BIGINT' if typ.upper() == 'HUGEINT' else 'DOUBLE'}) AS {_q(col)}")
        else:
            select.append(_q(col))
    missing = [c for c in declared if c not in actual]
    select += [f"CAST(NULL AS {declared[c]}) AS {_q(c)}" for c in missing]
    order = " ORDER BY tenant_id, study_id" if {"tenant_id", "study_id"} <= set(actual) else ""
    where = f" WHERE tenant_id = {duckdb_str(tenant)}" if tenant is not None else ""
    # the spec's display columns (calculated:) are computed here, in SQL ClickHouse's serving views share
    display = "".join(f", CAST({sql} AS {typ}) AS {_q(c)}" for c, (sql, typ) in calculated.items())
    con.execute(f"CREATE TABLE main.{_q(name)} AS SELECT *{display} FROM (SELECT {', '.join(select)} "
                f"FROM wh.{_q(schema)}.{_q(name)}{where}) AS mart{order}")
    report.copied[name] = con.execute(f"SELECT count(*) FROM main.{_q(name)}").fetchone()[0]
    if missing:
        report.added_columns[name] = missing


def _create_empty(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, str]) -> None:
    con.execute(f"CREATE TABLE main.{_q(name)} ({', '.join(f'{_q(c)} {t}' for c, t in columns.items())})")


def _tables_with(con: duckdb.DuckDBPyConnection, columns: set[str]) -> list[str]:
    rows = con.execute(
        "SELECT table_name, list(column_name) FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = 'main' AND starts_with(table_name, 'mart_') "
        "GROUP BY table_name ORDER BY table_name").fetchall()
    return [t for t, cols in rows if columns <= set(cols)]


def _build_serving_tables(con: duckdb.DuckDBPyConnection, spec: Spec) -> None:
    site_sources = _tables_with(con, {"tenant_id", "study_id", "site_id"})
    sites = " UNION ".join(
        f"SELECT CAST(tenant_id AS VARCHAR) AS tenant_id, CAST(study_id AS VARCHAR) AS study_id, "
        f"CAST(site_id AS VARCHAR) AS site_id FROM main.{_q(t)} WHERE site_id IS NOT NULL" for t in site_sources)
    _create_empty(con, "serving_study_sites", spec.datasets["serving_study_sites"].columns)
    if sites:
        con.execute(f"INSERT INTO serving_study_sites SELECT DISTINCT * FROM ({sites}) ORDER BY ALL")

    study_sources = _tables_with(con, {"tenant_id", "study_id"})
    _create_empty(con, AVAILABILITY_DATASET, spec.datasets[AVAILABILITY_DATASET].columns)
    if not study_sources:
        return
    studies = " UNION ".join(f"SELECT DISTINCT tenant_id, study_id FROM main.{_q(t)}" for t in study_sources)
    con.execute(f"CREATE TEMP TABLE studies AS {studies}")
    select = availability_select(spec, "studies", lambda mart: f"main.{_q(mart)}", duckdb_str)
    con.execute(f"INSERT INTO {AVAILABILITY_DATASET} SELECT * FROM ({select}) ORDER BY ALL")


def availability_select(spec: Spec, studies: str, table: Callable[[str], str], literal: Callable[[str], str]) -> str:
    """SELECT of ``serving_dashboard_availability`` (tenant_id, study_id, dashboard, source, status,
    n_rows) in SQL that DuckDB and ClickHouse read alike: ``studies`` is a relation of the distinct
    tenant_id, study_id; ``table(mart)`` a mart's reference, ``literal(text)`` a string literal.

    Per study, dashboard and source (each mart of the dashboard, each bronze domain it needs):
    available when the mart has a row of the study / the domain is present in mart_data_availability.
    A UNION with a zero row per study instead of an outer join, so the result does not depend on
    ClickHouse's join_use_nulls."""
    def part(slug: str, source: str, rows: str) -> str:
        return (f"SELECT tenant_id, study_id, {literal(slug)} AS dashboard, {literal(source)} AS source, "
                f"CASE WHEN max(found) = 1 THEN 'available' ELSE {literal(NOT_AVAILABLE)} END AS status, "
                f"CAST(sum(n) AS BIGINT) AS n_rows "
                f"FROM (SELECT tenant_id, study_id, 0 AS found, 0 AS n FROM {studies} UNION ALL {rows}) AS counted "
                f"GROUP BY tenant_id, study_id")

    parts = []
    for dash in spec.dashboards.values():
        for mart in dash.marts:
            parts.append(part(dash.slug, mart, f"SELECT tenant_id, study_id, 1, count(*) FROM {table(mart)} "
                                               "GROUP BY tenant_id, study_id"))
        for domain in dash.requires_domains:
            parts.append(part(dash.slug, f"domain {domain}",
                              f"SELECT tenant_id, study_id, CASE WHEN is_present THEN 1 ELSE 0 END, row_count "
                              f"FROM {table('mart_data_availability')} WHERE domain = {literal(domain)}"))
    return " UNION ALL ".join(parts)


def publish(warehouse: Path, serving: Path, spec: Spec | None = None, retries: int = 10,
            wait_s: float = 3.0, tenant: str | None = None) -> PublishReport:
    """Build a fresh serving file from ``warehouse`` and atomically replace ``serving`` with it
    (``tenant``: that tenant's rows only, see the module docstring).

    Raises WarehouseBusyError when the warehouse stays locked for ``retries`` x ``wait_s`` seconds
    (the existing serving file, if any, is left untouched).
    """
    spec = spec or load_spec()
    serving = Path(serving).resolve()
    serving.parent.mkdir(parents=True, exist_ok=True)
    tmp = serving.with_name(f".{serving.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    report = PublishReport(serving)
    con = duckdb.connect(str(tmp))
    try:
        attached = _attach_warehouse(con, Path(warehouse).resolve(), retries, wait_s)
        marts = _warehouse_marts(con) if attached else {}
        for name, ds in spec.datasets.items():
            if ds.serving:
                continue
            if name in marts:
                _copy_mart(con, name, marts[name], ds.columns, report, tenant, ds.calculated)
            else:
                _create_empty(con, name, ds.all_columns)
                report.placeholders.append(name)
        for name, schema in marts.items():
            if name not in spec.datasets:
                _copy_mart(con, name, schema, {}, report, tenant)
        if attached:
            con.execute("DETACH wh")
        _build_serving_tables(con, spec)
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    os.replace(tmp, serving)
    dir_fd = os.open(serving.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename durable
    finally:
        os.close(dir_fd)
    return report


def default_paths() -> tuple[Path, Path]:
    """(warehouse, serving) from trialsynth's settings; falls back to the default layout when the
    trialsynth package is not importable (e.g. from Superset's own virtualenv)."""
    try:
        from trialsynth.settings import get_settings
    except ImportError:
        root = Path(__file__).resolve().parents[2]
        return root / "data" / "warehouse" / "trialsynth.duckdb", root / "data" / "serving" / "marts.duckdb"
    s = get_settings()
    return s.warehouse_path, s.data_path / "serving" / "marts.duckdb"


def main(argv: list[str] | None = None) -> int:
    warehouse, serving = default_paths()
    p = argparse.ArgumentParser(description="Publish the marts to the read-only serving DuckDB file.")
    p.add_argument("--warehouse", type=Path, default=warehouse)
    p.add_argument("--serving", type=Path, default=serving)
    p.add_argument("--retries", type=int, default=10)
    p.add_argument("--wait", type=float, default=3.0, help="seconds between retries while the warehouse is locked")
    p.add_argument("--tenant", help="publish this tenant's rows only (a per-tenant serving file)")
    args = p.parse_args(argv)
    try:
        report = publish(args.warehouse, args.serving, retries=args.retries, wait_s=args.wait, tenant=args.tenant)
    except WarehouseBusyError as exc:
        print(f"publish skipped: {exc}", file=sys.stderr)
        if args.serving.exists():
            print(f"still serving the previous {args.serving}", file=sys.stderr)
            return 0
        return 1
    if not args.warehouse.exists():
        print(f"warehouse {args.warehouse} does not exist yet (run `make demo`): every mart is a placeholder")
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
