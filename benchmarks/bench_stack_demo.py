"""The demo on the embedded default vs on the scale-out stack: seconds per stage of one run (issue 10).

The same command (``trialsynth demo``, one generated study, no CDISC pilot) runs twice, each in a fresh
data folder and Dagster instance, in a child process of its own, changing nothing but settings:

* embedded (the reference): SQLite Dagster storage, DuckDB marts, lineage files and the SQLite
  registry in the lake;
* stack: the settings ``make stack-up`` writes for a stack started here on free ports in a temporary
  folder (Postgres for Dagster and the registry, dbt's marts in the chDB ClickHouse endpoint, lineage
  in SeaweedFS under Object Lock, the lake's raw zone, bronze, quarantine and analytics files in the
  SeaweedFS lake bucket). The landing zone is a local folder on both.

A stage is one step of the study pipeline's run (a Dagster op: one asset, the bronze multi-asset, a
dbt model with its tests); its seconds are the step's start to end as Dagster recorded them.
Ratio = stack / embedded (> 1: slower on the stack). Cores and load average are recorded: on a shared
machine the absolute seconds move with the load, the ratios less.

    .venv/bin/python benchmarks/bench_stack_demo.py           # 200 subjects, the demo's own study config
    .venv/bin/python benchmarks/bench_stack_demo.py --quick   # 60 subjects, the tests' fast study config
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TENANT, STUDY = "bench", "ACME-001"  # the demo study's id: its study config and design apply
OUT = ROOT / "benchmarks" / "results" / "stack_demo.md"


def child(args: argparse.Namespace) -> None:
    """Run the demo with the environment's settings; print the run's step seconds as JSON."""
    import dagster as dg

    from trialsynth.cli import main

    start = time.perf_counter()
    code = main(["demo", "--tenant", TENANT, "--study", STUDY, "--subjects", str(args.subjects),
                 "--sites", str(args.sites), "--no-cdisc"])
    wall = time.perf_counter() - start
    instance = dg.DagsterInstance.get()
    (run,) = instance.get_runs(filters=dg.RunsFilter(tags={"trialsynth/tenant": TENANT}))
    record = instance.get_run_record_by_id(run.run_id)
    steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run.run_id)
             if s.start_time and s.end_time}
    print(json.dumps({"exit": code, "status": run.status.value, "wall": wall,
                      "run": record.end_time - record.start_time, "steps": steps}))


def run_target(name: str, env: dict[str, str], args: argparse.Namespace, work: Path) -> dict:
    env = {**os.environ, **env, "TRIALSYNTH_DATA_DIR": str(work / name / "data"),
           "DAGSTER_HOME": str(work / name / "dagster_home")}
    if args.quick:
        from tests.conftest import fast_study_config

        env["TRIALSYNTH_STUDIES_DIR"] = str(fast_study_config(work / "studies", STUDY))
    print(f"[{name}] trialsynth demo, {args.subjects} subjects ...", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, __file__, "--child", "--subjects", str(args.subjects), "--sites",
                           str(args.sites)], env=env, cwd=ROOT, capture_output=True, text=True)
    (work / f"{name}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"[{name}] failed (exit {done.returncode}); log {work / f'{name}.log'}:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["status"] != "SUCCESS":
        raise SystemExit(f"[{name}] run {result['status']}; log {work / f'{name}.log'}")
    print(f"[{name}] {result['run']:.0f} s run, {result['wall']:.0f} s command", file=sys.stderr)
    return result


def stage_table(embedded: dict, stack: dict) -> list[str]:
    rows = ["| stage (Dagster step) | embedded s | stack s | ratio |", "|---|---|---|---|"]

    def row(label: str, a: float | None, b: float | None) -> str:
        ratio = f"{b / a:.2f}" if a and b is not None else ""
        return f"| {label} | {'' if a is None else f'{a:.1f}'} | {'' if b is None else f'{b:.1f}'} | {ratio} |"

    steps = sorted(set(embedded["steps"]) | set(stack["steps"]), key=lambda k: -max(embedded["steps"].get(k, 0),
                                                                                     stack["steps"].get(k, 0)))
    rows += [row(f"`{k}`", embedded["steps"].get(k), stack["steps"].get(k)) for k in steps]
    rows.append(row("**sum of stages**", sum(embedded["steps"].values()), sum(stack["steps"].values())))
    rows.append(row("**the run** (start to end)", embedded["run"], stack["run"]))
    rows.append(row("**`trialsynth demo`** (wall, generation and Definitions load included)", embedded["wall"],
                    stack["wall"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 subjects with the tests' fast study config")
    parser.add_argument("--subjects", type=int)
    parser.add_argument("--sites", type=int)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.subjects = args.subjects or (60 if args.quick else 200)
    args.sites = args.sites or (3 if args.quick else 6)
    if args.child:
        child(args)
        return

    from infra.stack.services import start_all, stop_all
    from tests.stack_fixtures import world_searchable_tmpdir

    cores, load_before = os.cpu_count(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-stack-demo-"))
    state = world_searchable_tmpdir("bench-stack-")
    try:
        embedded = run_target("embedded", {}, args, work)
        stack = start_all(state, log=lambda line: print(line, file=sys.stderr))
        on_stack = run_target("stack", stack.environment(), args, work)
    finally:
        stop_all(state, log=lambda line: None)
        shutil.rmtree(state, ignore_errors=True)
    load_after = os.getloadavg()
    shutil.rmtree(work, ignore_errors=True)

    rerun = ".venv/bin/python benchmarks/bench_stack_demo.py" + (" --quick" if args.quick else "")
    config = "the tests' fast study config (mean and kNN imputers, 1 repeat, copula)" if args.quick else \
        "the demo's own study config (data/studies/ACME-001.yaml: mean, kNN, MICE, GAIN, 3 repeats; copula)"
    lines = [
        "## Demo on the embedded default vs on the scale-out stack: seconds per stage",
        "",
        f"Machine: {cores} CPU cores shared ({platform.machine()}), load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (1 min); {dt.date.today().isoformat()}.",
        f"Rerun: `{rerun}`.",
        f"One run of `trialsynth demo` per target: a generated study of {args.subjects} subjects at {args.sites} sites, "
        f"{config}, no CDISC pilot; fresh data folder and Dagster instance each. Reference: the embedded default "
        "(SQLite Dagster storage, DuckDB, lineage files, SQLite registry). Stack: Postgres 15 (Dagster storage, "
        "registry with row-level security), dbt-clickhouse into the chDB endpoint (a local stand-in for a "
        "ClickHouse server), lineage in SeaweedFS 4.48 under Object Lock, the lake (raw zone, bronze, "
        "quarantine, analytics files) in the SeaweedFS lake bucket through pyarrow's S3 filesystem (embedded: local "
        "folders); all on this machine. The landing zone is a local folder on both. A stage is a step of the "
        "run as Dagster timed it; ratio = stack / embedded (> 1: slower on the stack). Steps run side by side (Dagster's "
        "multiprocess executor, one process per core) and on the stack Postgres, SeaweedFS and the ClickHouse endpoint "
        "share the same cores, so a stage's seconds include waiting for a core: with one run per target, single-stage "
        "ratios are noisy (a pure-compute stage such as `imputation_benchmark` moves with whatever runs beside it); "
        "the run's total is the figure to compare.",
        "",
        *stage_table(embedded, on_stack),
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
