"""Publish the marts to Superset on ClickHouse (``warehouse.target: clickhouse``): a serving
database beside dbt's, holding what the DuckDB serving file holds (infra/superset/publish.py):

* ``<db>_serving.mart_*``: views of every mart of ``<db>``, so every dbt build (one REPLACE
  PARTITION per tenant/study) shows at once and nothing is copied; the columns the dashboards spec
  declares are cast to the declared type (as Nullable ClickHouse types), a declared column the mart
  lacks is NULL, a declared mart ``<db>`` lacks is an empty view of the declared columns (so no chart
  errors; the next publish points it at the mart once dbt built it);
* ``serving_study_sites`` and ``serving_dashboard_availability``: tables of the same rows as the
  DuckDB serving tables (:func:`infra.superset.publish.availability_select`), computed at publish:
  as live views they read every mart about twenty times per query (~2 s a chart on the chDB
  stand-in, against ~60 ms for a table; benchmarks/results/stack.md).

Views are replaced with ``CREATE OR REPLACE VIEW``, tables built aside and swapped in with
``EXCHANGE TABLES``: Superset never sees a missing or half-built object. Run after dbt builds that
add a study or a mart (``run_superset.sh`` runs it at every start):
``python -m infra.superset.publish_clickhouse`` (the warehouse from ``$TRIALSYNTH_SUPERSET_WAREHOUSE``
or trialsynth's settings, see :mod:`infra.superset.warehouse`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from infra.superset.publish import availability_select
from infra.superset.spec import AVAILABILITY_DATASET, Spec, load_spec
from infra.superset.warehouse import ServedWarehouse, current

# The dashboards spec's (DuckDB) column types as ClickHouse types: Nullable like dbt's columns.
CLICKHOUSE_TYPES = {"VARCHAR": "String", "DOUBLE": "Float64", "BIGINT": "Int64", "INTEGER": "Int32",
                    "DATE": "Date32", "BOOLEAN": "Bool", "TIMESTAMP": "DateTime64(6)"}


def clickhouse_type(declared: str) -> str:
    """Nullable ClickHouse type of a spec column type; raises ValueError naming an unknown one."""
    base = CLICKHOUSE_TYPES.get(declared.upper())
    if base is None:
        raise ValueError(f"dashboards spec type {declared!r} has no ClickHouse type; known: {sorted(CLICKHOUSE_TYPES)}")
    return f"Nullable({base})"


def _q(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class ClickHousePublishReport:
    database: str
    views: dict[str, str] = field(default_factory=dict)  # view -> what it reads
    tables: dict[str, str] = field(default_factory=dict)  # table computed at publish -> from what
    placeholders: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"published {len(self.views)} views and {len(self.tables)} tables in ClickHouse database {self.database}"]
        out += [f"  {v}: view of {source}" for v, source in sorted(self.views.items())]
        out += [f"  {t}: table of {source}" for t, source in sorted(self.tables.items())]
        out += [f"  {m}: not in the warehouse yet, empty view" for m in self.placeholders]
        return out


def _mart_view(source: str | None, actual: dict[str, str], declared: dict[str, str],
               calculated: dict[str, tuple[str, str]] | None = None) -> str:
    """SELECT of one serving view: the mart's columns, declared ones cast, missing declared ones NULL,
    then the spec's display columns (``calculated``: name -> (SQL, type)) computed over them."""
    calculated = calculated or {}
    if source is None:
        columns = ", ".join(f"CAST(NULL AS {clickhouse_type(t)}) AS {_q(c)}"
                            for c, t in {**declared, **{c: t for c, (_, t) in calculated.items()}}.items())
        return f"SELECT {columns} WHERE 0"
    select = [f"CAST({_q(c)} AS {clickhouse_type(declared[c])}) AS {_q(c)}" if c in declared else _q(c) for c in actual]
    select += [f"CAST(NULL AS {clickhouse_type(t)}) AS {_q(c)}" for c, t in declared.items() if c not in actual]
    inner = f"SELECT {', '.join(select)} FROM {source}"
    if not calculated:
        return inner
    display = ", ".join(f"CAST({sql} AS {clickhouse_type(t)}) AS {_q(c)}" for c, (sql, t) in calculated.items())
    return f"SELECT *, {display} FROM ({inner}) AS mart"


def publish_clickhouse(client, warehouse: ServedWarehouse, spec: Spec | None = None) -> ClickHousePublishReport:
    """Create or replace the serving views of ``warehouse`` through ``client`` (clickhouse-connect)."""
    spec = spec or load_spec()
    db, serving = warehouse.clickhouse_database, warehouse.serving_database
    report = ClickHousePublishReport(serving)
    columns: dict[str, dict[str, str]] = {}
    for table, column, ctype in client.query(
            "SELECT table, name, type FROM system.columns WHERE database = {db:String} AND startsWith(table, 'mart_') "
            "ORDER BY table, position", parameters={"db": db}).result_rows:
        columns.setdefault(table, {})[column] = ctype
    client.command(f"CREATE DATABASE IF NOT EXISTS {_q(serving)}")

    def view(name: str, select: str, what: str) -> None:
        client.command(f"CREATE OR REPLACE VIEW {_q(serving)}.{_q(name)} AS {select}")
        report.views[name] = what

    def table(name: str, select: str, what: str) -> None:
        target, new = f"{_q(serving)}.{_q(name)}", f"{_q(serving)}.{_q(name + '__new')}"
        client.command(f"DROP TABLE IF EXISTS {new}")
        client.command(f"CREATE TABLE {new} ENGINE = MergeTree ORDER BY tuple() AS {select}")
        engine = client.query("SELECT engine FROM system.tables WHERE database = {db:String} AND name = {name:String}",
                              parameters={"db": serving, "name": name}).result_rows
        if engine and engine[0][0] == "MergeTree":
            client.command(f"EXCHANGE TABLES {new} AND {target}")
            client.command(f"DROP TABLE {new}")
        else:  # first publish
            client.command(f"DROP TABLE IF EXISTS {target}")
            client.command(f"RENAME TABLE {new} TO {target}")
        report.tables[name] = what

    marts = [n for n, ds in spec.datasets.items() if not ds.serving] + sorted(set(columns) - set(spec.datasets))
    served: dict[str, set[str]] = {}
    for name in marts:
        declared = spec.datasets[name].columns if name in spec.datasets else {}
        calculated = spec.datasets[name].calculated if name in spec.datasets else {}
        source = f"{_q(db)}.{_q(name)}" if name in columns else None
        view(name, _mart_view(source, columns.get(name, {}), declared, calculated), source or "placeholder")
        if source is None:
            report.placeholders.append(name)
        served[name] = set(columns.get(name, {})) | set(declared)

    ref = lambda mart: f"{_q(serving)}.{_q(mart)}"  # noqa: E731
    with_sites = [m for m, cols in served.items() if {"tenant_id", "study_id", "site_id"} <= cols]
    sites = " UNION ALL ".join(f"SELECT tenant_id, study_id, CAST(site_id AS Nullable(String)) AS site_id FROM {ref(m)} "
                               "WHERE site_id IS NOT NULL" for m in with_sites)
    table("serving_study_sites", f"SELECT DISTINCT tenant_id, study_id, site_id FROM ({sites})" if sites else
         _mart_view(None, {}, spec.datasets["serving_study_sites"].columns), "the marts' sites")
    with_studies = [m for m, cols in served.items() if {"tenant_id", "study_id"} <= cols]
    studies = " UNION DISTINCT ".join(f"SELECT tenant_id, study_id FROM {ref(m)}" for m in with_studies)
    available = availability_select(spec, "studies", ref, _literal)
    table(AVAILABILITY_DATASET, f"WITH studies AS ({studies}) SELECT * FROM ({available})" if studies else
         _mart_view(None, {}, spec.datasets[AVAILABILITY_DATASET].columns), "the marts' studies")
    return report


def main(argv: list[str] | None = None) -> int:
    import clickhouse_connect

    warehouse = current()
    if warehouse.target != "clickhouse":
        print(f"warehouse.target is {warehouse.target}: nothing to publish in ClickHouse", file=sys.stderr)
        return 1
    client = clickhouse_connect.get_client(host=warehouse.clickhouse_host, port=warehouse.clickhouse_port,
                                           username=warehouse.clickhouse_user, password=warehouse.clickhouse_password(),
                                           secure=warehouse.clickhouse_secure, compress=False)
    print("\n".join(publish_clickhouse(client, warehouse).lines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
