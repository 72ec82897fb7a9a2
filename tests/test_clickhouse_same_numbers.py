"""Same numbers on both warehouse targets (issue 10, item 3): dbt_project built on DuckDB and on
ClickHouse (through the chDB endpoint) from the same bronze gives every star-schema and mart table
the same columns, the same row count and the same values (floats to 1e-9 relative).

- fast (default suite): a small demo study (trialsynth.demo.generator, 40 subjects), the models
  behind the missingness mart and fact_ae; the ClickHouse side runs partition-scoped, as the
  orchestrator does (`--vars` tenant/study);
- slow: the hand-made ops study with its analytics tables, the demo study (600 subjects) and the
  CDISC pilot (when ../shared has it), every model and data test (`dbt build`).

Bronze is written by the helpers of tests/test_marts_clinical_ops.py (the ingest's own typing and
bronze writer, without its GX validation).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.test_dbt_project import query, write_bronze
from tests.test_marts_clinical_ops import (
    CDISC,
    DEMO,
    OPS,
    QTL_YAML,
    cdisc_frames,
    demo_frames,
    materialize_rbqm_assets,
    ops_rows,
    write_analytics_tables,
    write_bronze_frames,
)
from tests.test_stack_dbt_clickhouse import clickhouse_client, clickhouse_dbt_env, compiled, dbt, failures
from trialsynth.domains import DOMAINS
from trialsynth.settings import get_settings

REL_TOL, ABS_TOL = 1e-9, 1e-12  # abs: a sum of floats that cancels to ~1e-17 on one engine and 0 on the other
FAST_MODELS = ["+mart_missingness", "fact_ae"]  # star schema, the heaviest fact and percentages


def _value(v: Any) -> Any:
    """One comparable form: None for NULL/NaN, ISO text for dates, bool, int or float for numbers."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()[:10] if not isinstance(v, dt.datetime) else v.isoformat()
    if isinstance(v, bool | str):
        return v
    number = float(v)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _sort_key(row: Sequence[Any]) -> tuple:
    """Rows ordered by every value (NULLs first, numbers before text), floats rounded to 6
    significant digits so that 1e-12 noise between the engines cannot reorder them."""
    return tuple((0, 0.0, "") if v is None else (2, 0.0, v) if isinstance(v, str) else (1, float(f"{float(v):.6g}"), "")
                 for v in row)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def compare_tables(duck: tuple[list[str], list[tuple]], ch: tuple[list[str], list[tuple]], name: str) -> None:
    (d_cols, d_rows), (c_cols, c_rows) = duck, ch
    assert c_cols == d_cols, name
    assert len(c_rows) == len(d_rows), (name, len(d_rows), len(c_rows))
    d_sorted = sorted((tuple(map(_value, r)) for r in d_rows), key=_sort_key)
    c_sorted = sorted((tuple(map(_value, r)) for r in c_rows), key=_sort_key)
    for d_row, c_row in zip(d_sorted, c_sorted, strict=True):
        diff = [(col, a, b) for col, a, b in zip(d_cols, d_row, c_row, strict=True) if not _same(a, b)]
        assert not diff, (name, dict(zip(d_cols, d_row, strict=True)), diff)


def build_both(root: Path, endpoint, select: list[str], command: str, clickhouse_vars: dict | None) -> dict[str, Any]:
    """dbt ``command`` over ``root/lake`` on DuckDB (every partition) and on ClickHouse (a database
    of its own; partition-scoped when ``clickhouse_vars``); returns what to compare."""
    database = f"same_{uuid.uuid4().hex[:10]}"
    env = {"TRIALSYNTH_LAKE_DIR": str(root / "lake"), "TRIALSYNTH_WAREHOUSE_PATH": str(root / "warehouse.duckdb"),
           "TRIALSYNTH_STUDIES_DIR": str(root / "studies"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    selection = ["--select", *select] if select else []
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**clickhouse_dbt_env(endpoint, database), **env}.items():
            mp.setenv(name, value)
        duck = dbt([command, *selection], "duckdb", root / "duckdb")
        assert duck.success and not failures(duck), failures(duck) or duck.exception
        extra = ["--vars", json.dumps(clickhouse_vars)] if clickhouse_vars else []
        ch = dbt([command, *selection, *extra], "clickhouse", root / "clickhouse")
        assert ch.success and not failures(ch), failures(ch) or ch.exception
    tables = sorted(n for n, node in compiled(root / "duckdb").items()
                    if node["config"]["materialized"] == "incremental" and n in {r.node.name for r in duck.result})
    return {"tables": tables, "database": database}


def fetch(root: Path, endpoint, database: str, table: str) -> dict[str, tuple[list[str], list[tuple]]]:
    rows = query(root / "warehouse.duckdb", f"select * from {table}")
    columns = [r[0] for r in query(root / "warehouse.duckdb", f"select column_name from information_schema.columns "
                                                             f"where table_name = '{table}' order by ordinal_position")]
    result = clickhouse_client(endpoint, database).query(f"select * from {table}")
    return {"duckdb": (columns, rows), "clickhouse": (list(result.column_names), [tuple(r) for r in result.result_rows])}


def _small_demo(lake: Path) -> None:
    from trialsynth.demo.generator import generate_study
    from trialsynth.ingest.readers import SOURCE_ROW

    tables = generate_study(*DEMO, n_subjects=40, n_sites=3, seed=11)
    write_bronze_frames(lake, *DEMO, {
        name: pl.from_pandas(tables[name]).with_columns(pl.int_range(1, len(tables[name]) + 1, dtype=pl.Int64).alias(SOURCE_ROW))
        for name in DOMAINS})


def test_small_demo_gives_the_same_numbers_on_both_targets(clickhouse_endpoint, tmp_path: Path) -> None:
    _small_demo(tmp_path / "lake")
    built = build_both(tmp_path, clickhouse_endpoint, FAST_MODELS, "run", {"tenant": DEMO[0], "study": DEMO[1]})
    assert {"fact_ae", "dim_subject", "fact_observation", "fact_missingness_cell", "mart_missingness"} <= set(built["tables"])
    try:
        for table in built["tables"]:
            got = fetch(tmp_path, clickhouse_endpoint, built["database"], table)
            assert got["duckdb"][1], table  # a comparison of empty tables would prove nothing
            compare_tables(got["duckdb"], got["clickhouse"], table)
    finally:
        clickhouse_client(clickhouse_endpoint).command(f"DROP DATABASE IF EXISTS {built['database']}")


@pytest.mark.slow
def test_demo_ops_and_cdisc_pilot_give_the_same_numbers_on_both_targets(clickhouse_endpoint, tmp_path: Path,
                                                                       request) -> None:
    lake = tmp_path / "lake"
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / f"{OPS[1]}.yaml").write_text(QTL_YAML)
    write_bronze(lake, *OPS, ops_rows())
    write_analytics_tables(lake)
    write_bronze_frames(lake, *DEMO, demo_frames())
    partitions = ["|".join(OPS), "|".join(DEMO)]
    try:
        request.getfixturevalue("cdisc_sdtm")
        write_bronze_frames(lake, *CDISC, cdisc_frames())
        partitions.append("|".join(CDISC))
    except pytest.skip.Exception:
        pass  # the pilot is absent here: ops and demo still run
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_STUDIES_DIR", str(tmp_path / "studies"))
        get_settings.cache_clear()
        materialize_rbqm_assets(tmp_path, partitions)  # qtl_limits, km_discontinuation as the pipeline runs them
    get_settings.cache_clear()
    built = build_both(tmp_path, clickhouse_endpoint, [], "build", None)
    assert len(built["tables"]) >= 20
    try:
        empty = []
        for table in built["tables"]:
            got = fetch(tmp_path, clickhouse_endpoint, built["database"], table)
            compare_tables(got["duckdb"], got["clickhouse"], table)
            if not got["duckdb"][1]:
                empty.append(table)
        assert not empty, f"no rows to compare in {empty}"
        tenants = query(tmp_path / "warehouse.duckdb", "select distinct tenant_id from dim_subject")
        assert len(tenants) == len(partitions)
    finally:
        clickhouse_client(clickhouse_endpoint).command(f"DROP DATABASE IF EXISTS {built['database']}")
