"""Ingest benchmark: a generated study with >= 2 million VS+LB observation rows, CSV drop.

Times trialsynth's ingest (raw-zone copy with sha256 + read + integrity checks + type + GX validation
+ bronze Parquet) against a bare DuckDB ``COPY (SELECT * FROM read_csv(...)) TO '...parquet'`` of the
same CSVs in the same run, and the file-structure checks alone (the proof each CSV was read whole,
:mod:`trialsynth.ingest.integrity`). Records the cores and the load average at start and end (the
machine may be shared) and writes benchmarks/results/ingest.md.

Rerun: nice .venv/bin/python benchmarks/bench_ingest.py [--subjects 14000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from trialsynth.demo.generator import generate_study, write_drop
from trialsynth.ingest.integrity import check_csv_text, csv_layout, strip_csv_bom
from trialsynth.ingest.landing import open_drop
from trialsynth.ingest.pipeline import ingest_raw_version
from trialsynth.ingest.raw_zone import land_drop

OUT = Path(__file__).parent / "results" / "ingest.md"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=14000)
    ap.add_argument("--sites", type=int, default=60)
    args = ap.parse_args()
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="ts-bench-ingest-"))
    try:
        t = time.perf_counter()
        tables = generate_study("bench", "BENCH-001", n_subjects=args.subjects, n_sites=args.sites, seed=11)
        drop_dir = write_drop(tables, work / "landing", "bench", "BENCH-001", drop_id="d1")
        gen_s = time.perf_counter() - t
        obs_rows = len(tables["vs"]) + len(tables["lb"])
        total_rows = sum(len(v) for v in tables.values())
        csv_bytes = sum(p.stat().st_size for p in drop_dir.glob("*.csv"))
        print(f"generated {total_rows:,} rows ({obs_rows:,} VS+LB), {csv_bytes / 1e6:.0f} MB CSV in {gen_s:.0f} s")

        con = duckdb.connect()
        (work / "duck").mkdir()
        t = time.perf_counter()
        for f in sorted(drop_dir.glob("*.csv")):
            con.execute(f"COPY (SELECT * FROM read_csv('{f}', all_varchar=true)) TO "
                        f"'{work / 'duck' / (f.stem + '.parquet')}' (FORMAT parquet, COMPRESSION zstd)")
        duck_s = time.perf_counter() - t

        t = time.perf_counter()
        raw = land_drop(open_drop(work / "landing", "bench", "BENCH-001", "d1"), work / "raw")
        land_s = time.perf_counter() - t
        report = ingest_raw_version(raw, work / "lake", log=lambda _m: None)
        ours_s = time.perf_counter() - t
        assert not report.failures, report.failures
        t = time.perf_counter()
        for f in sorted(drop_dir.glob("*.csv")):
            data, base = strip_csv_bom(f.read_bytes())
            check_csv_text(data, base)
            csv_layout(data, base)
        checks_s = time.perf_counter() - t
        load_end = os.getloadavg()
        print(f"duckdb {duck_s:.1f} s, trialsynth {ours_s:.1f} s (raw zone {land_s:.1f} s, structure checks {checks_s:.2f} s)")
        rows = [
            ("DuckDB COPY read_csv -> parquet (all_varchar, no validation)", duck_s, total_rows / duck_s, 1.0),
            ("trialsynth ingest (raw zone + sha256 + integrity checks + typing + GX validation + bronze)", ours_s, total_rows / ours_s,
             ours_s / duck_s),
        ]
        per_domain = "\n".join(f"| {d} | {o.rows_in:,} | {o.rows_quarantined:,} |" for d, o in report.domains.items() if o.rows_in)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        load = " / ".join(f"{x:.2f}" for x in load_start) + " at start, " + " / ".join(f"{x:.2f}" for x in load_end) + " at end"
        OUT.write_text(
            f"## Ingest throughput ({date.today()}, {platform.machine()}, {os.cpu_count()} CPU cores)\n\n"
            f"Rerun: `nice .venv/bin/python benchmarks/bench_ingest.py --subjects {args.subjects}`\n\n"
            f"Load average (1 / 5 / 15 min): {load} (the machine was shared with other sessions; DuckDB and trialsynth ran one after the other in this run).\n\n"
            f"Generated study: {args.subjects:,} subjects, {args.sites} sites, {total_rows:,} rows in all "
            f"({obs_rows:,} VS+LB observation rows), {csv_bytes / 1e6:.0f} MB of CSV.\n\n"
            "| pipeline | seconds | rows/s | time ratio vs DuckDB |\n|---|---:|---:|---:|\n"
            + "\n".join(f"| {n} | {s:.1f} | {r:,.0f} | {x:.2f}x |" for n, s, r, x in rows)
            + f"\n\nGoal: within 2x of DuckDB. Raw-zone copy + sha256 alone took {land_s:.1f} s. The file-structure "
            f"checks that prove each CSV was read whole (final record boundary, quotes closed, every record's field "
            f"count; `trialsynth.ingest.integrity`) took {checks_s:.2f} s over all {csv_bytes / 1e6:.0f} MB, "
            f"{checks_s / ours_s:.1%} of the ingest.\n\n"
            "| domain | rows in | quarantined |\n|---|---:|---:|\n" + per_domain + "\n"
        )
        print(OUT.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
