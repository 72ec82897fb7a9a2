"""Ingest benchmark: a generated study with >= 2 million VS+LB observation rows, CSV drop.

Times trialsynth's ingest (:data:`OURS`: raw zone, every integrity check, typing, the expectation suite,
bronze Parquet) against a bare DuckDB ``COPY (SELECT * FROM read_csv(...)) TO '...parquet'`` of the
same CSVs in the same run (:data:`DUCKDB`), and the file-structure checks alone (the proof each CSV
was read whole, :mod:`trialsynth.ingest.integrity`). DuckDB runs before and after trialsynth and the
ratio is against the mean of the two, as the machine may be shared; wall and CPU seconds are both
recorded, with the cores and the load average at start and end. Writes benchmarks/results/ingest.md.

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
DUCKDB = "DuckDB `COPY (SELECT * FROM read_csv(f, all_varchar=true)) TO 'f.parquet' (zstd)`: parse and write, no checks"
OURS = ("trialsynth `land_drop` + `ingest_raw_version`: raw zone (sha256, AES-256-GCM at rest), decrypt, proof each CSV is "
        "whole, typing (numbers parsed, non-finite refused), expectation suite (required, ranges, controlled terms, "
        "ISO 8601 shape, unique keys), ISO 8601 calendar, STUDYID identity, DOMAIN value, natural-key conflicts, "
        "subject cascade from DM, quarantine with reasons, bronze Parquet zstd (typed) + sha256 + fsync, all-or-nothing swap")


def _copy_with_duckdb(drop_dir: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of DuckDB's COPY of every CSV of the drop to Parquet."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    con = duckdb.connect()
    wall, cpu = time.perf_counter(), time.process_time()
    for f in sorted(drop_dir.glob("*.csv")):
        con.execute(f"COPY (SELECT * FROM read_csv('{f}', all_varchar=true)) TO "
                    f"'{out / (f.stem + '.parquet')}' (FORMAT parquet, COMPRESSION zstd)")
    return time.perf_counter() - wall, time.process_time() - cpu


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

        duck_before = _copy_with_duckdb(drop_dir, work / "duck")

        t, cpu = time.perf_counter(), time.process_time()
        raw = land_drop(open_drop(work / "landing", "bench", "BENCH-001", "d1"), work / "raw")
        land_s = time.perf_counter() - t
        report = ingest_raw_version(raw, work / "lake", log=lambda _m: None)
        ours_s, ours_cpu = time.perf_counter() - t, time.process_time() - cpu
        assert not report.failures, report.failures
        duck_after = _copy_with_duckdb(drop_dir, work / "duck")
        duck_s, duck_cpu = ((a + b) / 2 for a, b in zip(duck_before, duck_after, strict=True))
        t = time.perf_counter()
        for f in sorted(drop_dir.glob("*.csv")):
            data, base = strip_csv_bom(f.read_bytes())
            check_csv_text(data, base)
            csv_layout(data, base)
        checks_s = time.perf_counter() - t
        load_end = os.getloadavg()
        print(f"duckdb {duck_before[0]:.1f} / {duck_after[0]:.1f} s, trialsynth {ours_s:.1f} s "
              f"(raw zone {land_s:.1f} s, structure checks {checks_s:.2f} s)")
        rows = [
            (DUCKDB + f" (wall {duck_before[0]:.1f} s before ours, {duck_after[0]:.1f} s after; mean)", duck_s, duck_cpu, 1.0),
            (OURS, ours_s, ours_cpu, ours_s / duck_s),
        ]
        per_domain = "\n".join(f"| {d} | {o.rows_in:,} | {o.rows_quarantined:,} |" for d, o in report.domains.items() if o.rows_in)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        load = " / ".join(f"{x:.2f}" for x in load_start) + " at start, " + " / ".join(f"{x:.2f}" for x in load_end) + " at end"
        OUT.write_text(
            f"## Ingest throughput ({date.today()}, {platform.machine()}, {os.cpu_count()} CPU cores)\n\n"
            f"Rerun: `nice .venv/bin/python benchmarks/bench_ingest.py --subjects {args.subjects}`\n\n"
            f"Load average (1 / 5 / 15 min): {load} (the machine was shared with other sessions; DuckDB ran before "
            "and after trialsynth, one at a time, and the ratio is against its mean).\n\n"
            f"Generated study: {args.subjects:,} subjects, {args.sites} sites, {total_rows:,} rows in all "
            f"({obs_rows:,} VS+LB observation rows), {csv_bytes / 1e6:.0f} MB of CSV.\n\n"
            "| pipeline (what it does) | wall s | CPU s (all threads) | rows/s | wall time ratio vs DuckDB |\n"
            "|---|---:|---:|---:|---:|\n"
            + "\n".join(f"| {n} | {s:.1f} | {c:.1f} | {total_rows / s:,.0f} | {x:.2f}x |" for n, s, c, x in rows)
            + f"\n\nGoal: within 2x of DuckDB (wall time, same run); CPU time ratio {ours_cpu / duck_cpu:.2f}x. Of trialsynth's time, landing in the raw zone (copy + sha256 + "
            f"encryption) took {land_s:.1f} s. The file-structure "
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
