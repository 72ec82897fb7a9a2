"""Latency of every dashboard chart query through Superset's chart-data API (issue 6: p95 < 1 s on
a generated study of 20,000 subjects).

A two-tenant warehouse is generated (``infra.superset.sample_marts``: tenant acme with
``--subjects`` subjects, mart sizes following the study size as the dbt marts do; tenant cdisc as
the CDISC pilot), published and served by ``infra/superset/run_superset.sh`` exactly as ``make
superset`` does. Each chart's saved query runs ``--reps`` times as the tenant user ``acme_viewer``
(row-level security applied) with ``force=true`` so Superset's cache is bypassed. Reference: the
very SQL Superset generated (``type=query``), run directly on the serving DuckDB file in this
process, timed in the same run; the ratio is Superset's overhead over the bare query.

    .venv/bin/python benchmarks/bench_dashboards.py            # 20,000 subjects, 20 reps per chart
    .venv/bin/python benchmarks/bench_dashboards.py --quick    # 5 reps per chart
    .venv/bin/python benchmarks/bench_dashboards.py --warehouse data/warehouse/trialsynth.duckdb  # a real one
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.superset.provision import SupersetClient  # noqa: E402 - after the sys.path line
from infra.superset.sample_marts import build_sample_warehouse  # noqa: E402
from infra.superset.server import running_superset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "dashboards.md"
GOAL_S = 1.0
ROW_LIMIT = 10_000  # infra.superset.bundle's default chart row limit: a chart at it is truncated
USER = "acme_viewer"


def _time_charts(url: str, home: Path, serving: Path, reps: int, log) -> list[dict]:
    client = SupersetClient(url, USER, (home / f"{USER}_password").read_text().strip())
    charts = client.list_all("chart", "id,slice_name,dashboards.dashboard_title")
    con = duckdb.connect(str(serving), read_only=True)
    rows = []
    for chart in sorted(charts, key=lambda c: (c["dashboards"][0]["dashboard_title"], c["id"])):
        path = f"/api/v1/chart/{chart['id']}/data/"
        first = client.get(path, params={"force": "true"})["result"][0]
        sql = client.get(path, params={"type": "query"})["result"][0]["query"]
        api, direct = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            client.get(path, params={"force": "true"})
            api.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            con.execute(sql).fetchall()
            direct.append(time.perf_counter() - t0)
        p95_api, p95_direct = float(np.percentile(api, 95)), float(np.percentile(direct, 95))
        rows.append({"dashboard": chart["dashboards"][0]["dashboard_title"], "chart": chart["slice_name"],
                     "rows": first["rowcount"], "p50": float(np.median(api)), "p95": p95_api,
                     "p95_direct": p95_direct, "ratio": p95_api / max(p95_direct, 1e-6)})
        log(f"  {rows[-1]['dashboard'][:28]:<28} {chart['slice_name'][:40]:<40} p95 {p95_api * 1000:7.1f} ms "
            f"(DuckDB direct {p95_direct * 1000:6.1f} ms)")
    return rows


def _mart_sizes(serving: Path) -> list[tuple[str, int]]:
    con = duckdb.connect(str(serving), read_only=True)
    names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
    return [(n, con.execute(f'SELECT count(*) FROM "{n}" WHERE tenant_id = \'acme\'').fetchone()[0]) for n in names]


def _markdown(rows: list[dict], sizes: list[tuple[str, int]], args: argparse.Namespace, wall: float) -> str:
    worst = max(r["p95"] for r in rows)
    source = (f"real warehouse `{args.warehouse}`" if args.warehouse else
              f"generated two-tenant warehouse (`infra.superset.sample_marts`, acme = {args.subjects:,} subjects)")
    rerun = "`.venv/bin/python benchmarks/bench_dashboards.py" + (" --quick" if args.quick else "") + "`"
    lines = [
        "# Dashboard chart queries (Superset chart-data API)", "",
        f"Rerun: {rerun}  ",
        f"Date: {dt.date.today()}; machine: 2 CPU cores ({platform.machine()}), Python {platform.python_version()}, "
        f"apache-superset 6.1.0 (gunicorn, 2 workers), DuckDB {duckdb.__version__}. The machine is shared, so "
        "absolute times vary between runs; ratios are from the same run.", "",
        f"Data: {source}, published to the read-only serving file. Every chart of the six dashboards, "
        f"{args.reps} runs each as tenant user `{USER}` (row-level security on), `force=true` (no cache). "
        "Reference: the same SQL Superset generated, run directly on the serving file with DuckDB. Most of each "
        "request is Superset's own per-request work (JWT auth, permission and RLS look-ups, audit-log commit, "
        "query building), which grows with the load other processes put on the 2 cores.", "",
        f"**Worst chart p95: {worst * 1000:.0f} ms — goal < {GOAL_S * 1000:.0f} ms: {'PASS' if worst < GOAL_S else 'FAIL'}** "
        f"(bench wall time {wall:.0f} s including Superset setup).", "",
        "| dashboard | chart | rows | p50 (ms) | p95 (ms) | p95 DuckDB direct (ms) | API / direct |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['dashboard']} | {r['chart'].replace('|', '/')} | {r['rows']:,}{' (row limit!)' if r['rows'] >= ROW_LIMIT else ''} | {r['p50'] * 1000:.0f} | "
              f"{r['p95'] * 1000:.0f} | {r['p95_direct'] * 1000:.1f} | {r['ratio']:.0f}x |" for r in rows]
    lines += ["", "Rows per table for tenant acme in the serving file:", "",
              "| table | rows |", "|---|---|"] + [f"| {n} | {c:,} |" for n, c in sizes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subjects", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="5 runs per chart")
    p.add_argument("--warehouse", type=Path, help="bench this warehouse instead of a generated one")
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 5
    if not (Path(__file__).resolve().parent.parent / ".venv-superset" / ".installed").exists():
        print("bench_dashboards: .venv-superset is absent (infra/superset/install.sh): skipped", file=sys.stderr)
        return 0
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="bench-dashboards-"))
    try:
        warehouse = base / "data" / "warehouse" / "trialsynth.duckdb"
        if args.warehouse:
            warehouse.parent.mkdir(parents=True)
            shutil.copyfile(args.warehouse, warehouse)
        else:
            log(f"generating the marts of a {args.subjects:,}-subject study")
            build_sample_warehouse(warehouse, n_subjects=args.subjects)
        log("starting Superset (first-run setup takes a minute or two)")
        with running_superset(base / "data", base / "home", base / "run_superset.log") as url:
            serving = base / "data" / "serving" / "marts.duckdb"
            rows = _time_charts(url, base / "home", serving, args.reps, log)
            sizes = _mart_sizes(serving)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(_markdown(rows, sizes, args, time.perf_counter() - t0))
        log(f"wrote {RESULTS}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
