"""A generated study at full size through the whole study pipeline (issue 14): seconds per stage, peak
memory, how each stage's cost grows with the number of subjects, and (optionally) the dashboards'
chart p95 on the marts the run built.

Each size runs in a fresh process, data folder and Dagster instance: the demo generator
(:mod:`trialsynth.demo.generator`) lands a drop of N subjects at ``--sites`` sites and the landing
sensor's runner (:func:`trialsynth.runner.process_landing_zone`, what ``make demo`` runs) executes the
whole ``study_pipeline`` job on it: raw zone, bronze validation, study matrix, missingness,
imputation, synthesis, evidence pack, design, RBQM and every dbt star-schema and mart step. Seconds per
stage are the run's own step durations (its STEP_SUCCESS events); peak memory is the run process's
maximum RSS (``getrusage``), dbt's subprocesses reported separately.

Study config (stated in the results): every size runs :data:`FAST_STUDY` (imputation compares mean and
KNN once, synthesis is the Gaussian copula) instead of the defaults (mean, KNN, MICE and GAIN x 3
repeats; CTGAN), which spend many minutes at 20,000 subjects on 2 cores without telling more about how
the pipeline scales.

Reference (speed ratio timed in the same run): the study matrix as the pipeline built it before issue 14,
rebuilt from bronze by each of its four readers, against one ``study_matrix`` build plus four reads.

    .venv/bin/python benchmarks/bench_full_size.py                         # 1,000, 5,000 and 20,000 subjects
    .venv/bin/python benchmarks/bench_full_size.py --quick                 # 300 and 1,000 subjects
    .venv/bin/python benchmarks/bench_full_size.py --sizes 20000 --dashboards --timeout-min 240

Results of every size are kept in ``benchmarks/results/full_size.json`` (a later run of other sizes adds
to them) and written as ``benchmarks/results/full_size.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from infra.stack.procs import stop_process_group  # noqa: E402  (after the path)

RESULTS = ROOT / "benchmarks" / "results" / "full_size.md"
RAW = RESULTS.with_suffix(".json")
TENANT, STUDY = "acme", "ACME-001"  # the dashboards' row-level security shows tenant acme
MATRIX_READERS = 4  # missingness_profile, imputation_benchmark, imputed_dataset, synthesizer_model
FAST_STUDY = """\
# bench_full_size.py: the demo study's settings with fast analytics (the defaults spend many minutes at 20,000)
seed: 7
imputation: {candidates: [mean, knn], mechanism: MCAR, rate: 0.2, repeats: 1}
synthesis: {synthesizer: copula, n: 500, allow_unapproved: true}
evidence: {target: auto}
qtl:
  - {name: discontinuation, kri: discontinuation_rate, limit: 0.25, direction: above}
  - {name: late CRF entry, kri: late_crf_entry_rate, limit: 0.15, direction: above}
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- one size, in its own process


def _step_seconds(instance, run_id: str) -> dict[str, dict]:
    """Step -> {"seconds", "status"} from the run's step events (finished steps, and running ones)."""
    import dagster as dg

    steps: dict[str, dict] = {}
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
             dg.DagsterEventType.STEP_SKIPPED}
    for record in instance.all_logs(run_id, of_type=kinds):
        event, key = record.dagster_event, record.step_key
        if event.event_type == dg.DagsterEventType.STEP_START:
            steps[key] = {"status": "running", "started": record.timestamp}
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            steps[key] = {"status": "success", "seconds": event.event_specific_data.duration_ms / 1000}
        else:
            started = steps.get(key, {}).get("started", record.timestamp)
            steps[key] = {"status": event.event_type.value.removeprefix("STEP_").lower(),
                          "seconds": record.timestamp - started}
    return steps


def _cpu_now() -> float:
    """CPU seconds of this process and its finished children (dbt's processes are waited for by their step)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _record_step_cpu(cpu: dict[str, float]) -> None:
    """Make the runner's step-line handler also note each step's CPU seconds in ``cpu``: the in-process
    executor runs one step at a time, so the CPU between a step's start and end events is that step's."""
    import dagster as dg

    from trialsynth import runner

    started: dict[str, float] = {}

    class StepCPU(runner._StepLines):
        def emit(self, record):
            event = getattr(record, "dagster_meta", {}).get("dagster_event")
            if event is not None and event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = _cpu_now()
            elif event is not None and event.event_type in runner.STEP_LINES and event.step_key in started:
                cpu[event.step_key] = _cpu_now() - started[event.step_key]
            super().emit(record)

    runner._StepLines = StepCPU


class _PeakRSS(threading.Thread):
    """Peak resident memory of this process and all its descendants together, sampled every 0.5 s.
    Read from /proc by hand: psutil is not a dependency, and getrusage's ru_maxrss of children is the
    parent's size at fork (dbt is started by fork + exec), not dbt's."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb, self._halt = 0.0, threading.Event()

    @staticmethod
    def _tree_rss_mb() -> float:
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parents[int(stat.parent.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
        tree, frontier = {os.getpid()}, [os.getpid()]
        while frontier:
            children = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in tree]
            tree.update(children)
            frontier = children
        pages = 0
        for pid in tree:
            try:
                pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    def run(self) -> None:
        while not self._halt.wait(0.5):
            self.peak_mb = max(self.peak_mb, self._tree_rss_mb())

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return self.peak_mb


def _matrix_reference(lake) -> dict[str, float]:
    """Seconds of one study matrix build from bronze and of one read of the materialized one."""
    from assets.study_data import BRONZE_DOMAINS, build_study_data, load_study_data

    key = f"{TENANT}|{STUDY}"
    t0 = time.perf_counter()
    build_study_data(*(lake.read_bronze(key, d) for d in BRONZE_DOMAINS))
    t1 = time.perf_counter()
    load_study_data(lake, key)
    t2 = time.perf_counter()
    return {"build_s": t1 - t0, "read_s": t2 - t1}


def _benchmark_reference(lake) -> dict:
    """The imputer comparison of the study's config on every subject-visit (reference: what the asset
    ran before the cap) and on the asset's capped sample: CPU seconds, rows, RMSE per imputer, winner."""
    from assets.imputation import BENCHMARK_MAX_ROWS, benchmark_sample
    from assets.study_data import load_study_data
    from models.impute.evaluate import evaluate_imputers, select_imputer

    key = f"{TENANT}|{STUDY}"
    cfg = lake.study_config(key)[0]
    data = load_study_data(lake, key)
    full = data.matrix.where(data.scheduled)
    out = {}
    sample = benchmark_sample(full, BENCHMARK_MAX_ROWS, cfg.seed)
    for name, matrix in (("all_rows", full), ("sample", sample)) if sample is not full else (("all_rows", full),):
        specs = {c: cfg.imputation.params.get(c, {}) for c in cfg.imputation.candidates}
        t0 = _cpu_now()
        result = evaluate_imputers(matrix.reset_index(drop=True), specs, mechanism=cfg.imputation.mechanism,
                                   rate=cfg.imputation.rate, repeats=cfg.imputation.repeats, random_state=cfg.seed)
        out[name] = {"rows": len(matrix), "cpu_s": _cpu_now() - t0, "winner": select_imputer(result).name,
                     "rmse": {k: float(v) for k, v in result.table("rmse")["mean"].items()}}
    out.setdefault("sample", out["all_rows"])  # a study under the cap is compared on every row
    return out


def run_child(n: int, sites: int, seed: int, work: Path) -> int:
    """Generate, land and run one study of ``n`` subjects; write ``work/result.json``."""
    from orchestration.resources import LakeResource
    from trialsynth.demo.generator import generate_study, write_drop
    from trialsynth.runner import process_landing_zone
    from trialsynth.settings import get_settings

    settings = get_settings()
    t0 = time.perf_counter()
    tables = generate_study(TENANT, STUDY, n_subjects=n, n_sites=sites, seed=seed)
    write_drop(tables, settings.landing_dir, TENANT, STUDY)
    generated = time.perf_counter() - t0
    rows = {name: len(frame) for name, frame in tables.items()}
    del tables
    log(f"[{n:,}] drop written in {generated:.0f} s ({sum(rows.values()):,} rows); running the pipeline")
    step_cpu: dict[str, float] = {}
    _record_step_cpu(step_cpu)
    sampler = _PeakRSS()
    sampler.start()
    t0 = time.perf_counter()
    (outcome,) = process_landing_zone(log=log, run_log_dir=settings.data_path / "logs")
    pipeline = time.perf_counter() - t0
    peak_tree_mb = sampler.stop()
    import dagster as dg

    steps = _step_seconds(dg.DagsterInstance.get(), outcome.run_id)
    for key, cpu in step_cpu.items():
        steps.setdefault(key, {})["cpu_s"] = cpu
    usage, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "subjects": n, "sites": sites, "seed": seed, "status": outcome.status, "run_id": outcome.run_id,
        "summary": outcome.summary, "rows": rows, "generate_s": generated, "pipeline_s": pipeline, "steps": steps,
        "peak_rss_mb": usage.ru_maxrss / 1024, "peak_tree_rss_mb": peak_tree_mb,
        "cpu_s": usage.ru_utime + usage.ru_stime, "dbt_cpu_s": children.ru_utime + children.ru_stime,
        "matrix_reference": _matrix_reference(LakeResource()) if outcome.status == "SUCCESS" else None,
        "imputation_reference": _benchmark_reference(LakeResource()) if outcome.status == "SUCCESS" else None,
        "warehouse": str(settings.warehouse_path),
    }
    (work / "result.json").write_text(json.dumps(result, indent=2))
    return 0 if outcome.status == "SUCCESS" else 1


# ---------------------------------------------------------------- definitions load (issue 14)

LOAD_PROBES = {
    "definitions now": "import orchestration.definitions",
    "definitions now, jsonschema's rfc3987_syntax imported first": "import jsonschema; import orchestration.definitions",
    "dagster alone": "import dagster",
    "dagster + dagster-dbt (rfc3987_syntax kept out)":
        "import sys; sys.modules['rfc3987_syntax'] = None; import dagster, dagster_dbt",
}


def _cpu_of(code: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """(CPU seconds of ``code`` itself: from the interpreter's start to the end of the imports, as a code
    server or run worker pays it; CPU seconds of the whole process, interpreter finalization at exit
    included; wall seconds) of ``python -c code`` in a fresh process."""
    probe = f"{code}\nimport time as _t; print(_t.process_time())"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, check=True, capture_output=True, text=True,
                         timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(out.stdout.strip().splitlines()[-1]), process, wall


def _baseline_tree(commit: str) -> Path:
    """The repository at ``commit`` in a temp dir, with today's parsed dbt manifest (fresh), so its
    definitions load is timed without a parse, as the working tree's."""
    tree = Path(tempfile.mkdtemp(prefix="bench-defs-"))
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    manifest = tree / "dbt_project" / "target" / "manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "dbt_project" / "target" / "manifest.json", manifest)
    return tree


def definitions_load(repeats: int, baseline: str | None) -> dict:
    """CPU and wall seconds of the probes (interleaved, ``repeats`` rounds) and of ``baseline``'s
    definitions (a commit before issue 14), with the load average around them."""
    probes = dict(LOAD_PROBES)
    cwd = {name: ROOT for name in probes}
    env = {name: None for name in probes}
    tree = _baseline_tree(baseline) if baseline else None
    if tree is not None:
        name = f"definitions at {baseline} (before)"
        probes[name], cwd[name] = "import orchestration.definitions", tree
        env[name] = {**os.environ, "PYTHONPATH": str(tree), "TRIALSYNTH_DATA_DIR": str(tree / "data")}
    load_before, runs = os.getloadavg(), {name: [] for name in probes}
    try:
        for _ in range(repeats):
            for name, code in probes.items():
                runs[name].append(_cpu_of(code, cwd[name], env[name]))
    finally:
        if tree is not None:
            shutil.rmtree(tree, ignore_errors=True)
    return {"repeats": repeats, "load_before": load_before, "load_after": os.getloadavg(), "runs": runs,
            "date": dt.date.today().isoformat()}


def _definitions_markdown(d: dict) -> list[str]:
    lines = ["", "## Definitions load", "",
             f"`import orchestration.definitions` and its parts, each in a fresh process, {d['repeats']} interleaved "
             f"rounds ({d['date']}, load average {d['load_before'][0]:.1f} before, {d['load_after'][0]:.1f} after, on "
             f"{os.cpu_count()} cores: CPU seconds are the robust figure on a shared machine, wall seconds include "
             "waiting for a core). Load CPU: the interpreter's start to the end of the imports (`time.process_time()` "
             "in the process), what a code server or run worker pays before it can work; process CPU adds the "
             "interpreter's finalization when a one-shot process exits (about 1 s with dbt-core's classes in memory). "
             "Budget: 3 s of load CPU (tests/test_definitions_load.py).", "",
             "| probe | load CPU s (median) | load CPU s (min) | process CPU s (median) | wall s (median) |",
             "|---|---|---|---|---|"]
    for name, runs in d["runs"].items():
        if len(runs[0]) == 2:  # recorded before load CPU was measured: (process CPU, wall)
            runs = [(float("nan"), c, w) for c, w in runs]
        load, process, wall = (sorted(r[i] for r in runs) for i in range(3))
        mid = len(runs) // 2
        lines.append(f"| {name} | {load[mid]:.2f} | {load[0]:.2f} | {process[mid]:.2f} | {wall[mid]:.1f} |")
    return lines


# ---------------------------------------------------------------- the parent: sizes, timeouts, report


def _child_env(work: Path) -> dict[str, str]:
    studies = work / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    (studies / f"{STUDY}.yaml").write_text(FAST_STUDY)
    return {**os.environ, "TRIALSYNTH_DATA_DIR": str(work / "data"), "TRIALSYNTH_DAGSTER_HOME": str(work / "dagster_home"),
            "DAGSTER_HOME": str(work / "dagster_home"), "TRIALSYNTH_STUDIES_DIR": str(studies),
            "PYTHONUNBUFFERED": "1"}


def _partial(work: Path, n: int, sites: int, seed: int, waited: float) -> dict:
    """What a size that ran out of time finished: its steps so far, read from its Dagster instance."""
    env = _child_env(work)
    code = ("import json, sys, dagster as dg\n"
            f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
            "from bench_full_size import _step_seconds\n"
            "i = dg.DagsterInstance.get()\n"
            "runs = i.get_runs(limit=1)\n"
            "print(json.dumps(_step_seconds(i, runs[0].run_id) if runs else {}))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    steps = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else {}
    return {"subjects": n, "sites": sites, "seed": seed, "status": "TIMEOUT", "pipeline_s": waited, "steps": steps}


def run_size(n: int, sites: int, seed: int, timeout_s: float, keep: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-full-{n}-", dir=keep))
    env = _child_env(work)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--sites", str(sites), "--seed", str(seed),
           "--work", str(work)]
    load_before = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    try:
        proc.wait(timeout=timeout_s)
        result = json.loads((work / "result.json").read_text())
    except subprocess.TimeoutExpired:
        log(f"[{n:,}] out of time after {timeout_s / 60:.0f} min: stopping it and keeping the steps it finished")
        stop_process_group(proc, timeout_s=60)
        result = _partial(work, n, sites, seed, time.perf_counter() - t0)
    except FileNotFoundError:
        result = {"subjects": n, "sites": sites, "seed": seed, "status": f"ERROR (exit {proc.returncode})", "steps": {}}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.update(wall_s=time.perf_counter() - t0, load_before=load_before, load_after=os.getloadavg(),
                  total_cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                  work=str(work), date=dt.date.today().isoformat())
    return result


def growth_exponent(n1: int, t1: float, n2: int, t2: float) -> float | None:
    """b in t ~ n^b between two sizes (None when a time is ~0: nothing to compare)."""
    if min(t1, t2) < 0.05:
        return None
    return math.log(t2 / t1) / math.log(n2 / n1)


def _dashboards(warehouse: Path, reps: int) -> dict:
    """p95 of every dashboard chart on ``warehouse`` (bench_dashboards.py's harness, same Superset setup)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_dashboards import _time_charts, running_superset

    base = Path(tempfile.mkdtemp(prefix="bench-full-dashboards-"))
    try:
        target = base / "data" / "warehouse" / "trialsynth.duckdb"
        target.parent.mkdir(parents=True)
        shutil.copyfile(warehouse, target)
        with running_superset(base / "data", base / "home", base / "run_superset.log") as url:
            rows = _time_charts(url, base / "home", base / "data" / "serving" / "marts.duckdb", reps, log)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"reps": reps, "charts": rows}


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:,.1f}"


def _summary(results: list[dict]) -> list[str]:
    """Findings at the largest size that finished: time, memory, the costliest and fastest-growing stages."""
    done = [r for r in results if r["status"] == "SUCCESS"]
    if not done:
        return ["**No size finished.**", ""]
    big = done[-1]
    cpu = {k: v.get("cpu_s", 0) for k, v in big["steps"].items()}
    top = sorted(cpu, key=cpu.get, reverse=True)[:3]
    lines = [f"**{big['subjects']:,} subjects, {big['sites']} sites: {big['status']}**, whole pipeline in "
             f"{big['pipeline_s']:,.0f} s wall, {big['cpu_s'] + big['dbt_cpu_s']:,.0f} s CPU (run process + dbt), peak "
             f"memory {big.get('peak_tree_rss_mb', big['peak_rss_mb']):,.0f} MB. Costliest stages there (CPU s): "
             + ", ".join(f"{k} {cpu[k]:.0f}" for k in top) + "."]
    if len(done) > 1:
        prev = done[-2]
        exps = {k: growth_exponent(prev["subjects"], prev["steps"][k]["cpu_s"], big["subjects"], v)
                for k, v in cpu.items() if prev["steps"].get(k, {}).get("cpu_s") and v}
        exps = {k: e for k, e in exps.items() if e is not None and cpu[k] >= 1}
        worst = sorted(exps, key=exps.get, reverse=True)[:3]
        lines[-1] += (f" Fastest-growing stages from {prev['subjects']:,} to {big['subjects']:,} subjects (exponent b, "
                      "stages of at least 1 s): " + ", ".join(f"{k} {exps[k]:.2f}" for k in worst) + ".")
    return [*lines, ""]


def _stage_cpu(result: dict, wanted) -> float:
    """CPU seconds of the stages of ``result`` whose names ``wanted`` accepts."""
    return sum(v.get("cpu_s", 0) for k, v in result["steps"].items() if wanted(k))


def _rmse(by_imputer: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in sorted(by_imputer.items()))


def markdown(results: list[dict], args_line: str, definitions: dict | None = None,
             before_fix: list[dict] | None = None) -> str:
    results = sorted(results, key=lambda r: r["subjects"])
    sizes = [r["subjects"] for r in results]
    steps = sorted({s for r in results for s in r.get("steps", {})})
    finished = [r for r in results if r["status"] == "SUCCESS"]
    lines = [
        "# A generated study at full size through the whole pipeline", "",
        "Rerun: `.venv/bin/python benchmarks/bench_full_size.py --dashboards --definitions 5 --baseline 5f68122 --timeout-min 240` "
        f"(all of it; sizes can be run separately, results add up); this file was last written by `{args_line}`  ",
        f"Date: {max(r['date'] for r in results)}; machine: {os.cpu_count()} CPU cores ({platform.machine()}), "
        f"Python {platform.python_version()}, shared with other users: the load average (1 min) before/after each "
        "size is in the table; on a busy machine wall seconds include waiting for a core.", "",
        "Study: the demo generator at the sizes below, `--sites` sites, seed as listed; landed and run as "
        "`make demo` runs it (the landing sensor's runner, `study_pipeline` job, every asset and dbt step). "
        "**Study config: fast analytics** — imputation compares mean and KNN once, synthesis is the Gaussian copula "
        "(n = 500), instead of the defaults (mean, KNN, MICE and GAIN with 3,000 iterations, 3 repeats each; CTGAN): "
        "before the comparison was capped, KNN alone took 460 s of CPU per repeat at 20,000 subjects, and CTGAN "
        "takes about 230 s of CPU from 10,000 rows up (benchmarks/results/synthesis_fit.md).", "",
        *_summary(results),
        "## Runs", "",
        "| subjects | sites | status | rows landed | pipeline wall (s) | CPU (s): run process + dbt | "
        "peak RSS, run process (MB) | peak RSS, run + dbt processes (MB) | load before / after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cpu = f"{r['cpu_s']:,.0f} + {r['dbt_cpu_s']:,.0f}" if "cpu_s" in r else f"{r.get('total_cpu_s', 0):,.0f} (total)"
        rows = f"{sum(r['rows'].values()):,}" if "rows" in r else "-"
        peak = f"{r['peak_rss_mb']:,.0f}" if "peak_rss_mb" in r else "-"
        tree = f"{r['peak_tree_rss_mb']:,.0f}" if "peak_tree_rss_mb" in r else "-"
        lines.append(f"| {r['subjects']:,} | {r['sites']} | {r['status']} | {rows} | {_fmt(r.get('pipeline_s'))} | "
                     f"{cpu} | {peak} | {tree} | {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} |")
    pairs = list(zip(sizes, sizes[1:], strict=False))
    lines += ["", "## Seconds per stage and how they grow", "",
              "Per stage: CPU seconds (the run process between the step's start and end events, dbt's processes "
              "included; the in-process executor runs one step at a time) and wall seconds (the step's duration in "
              "Dagster; on a shared machine it includes waiting for a core). Growth: the exponent b in CPU ~ "
              "subjects^b between consecutive sizes (1 = linear, 2 = quadratic, about 0 = a fixed cost). A stage "
              "that did not finish is marked.", "",
              "| stage | " + " | ".join(f"CPU s {n:,}" for n in sizes) + " | " + " | ".join(f"wall s {n:,}" for n in sizes)
              + "".join(f" | b {a:,}->{b:,}" for a, b in pairs) + " |",
              "|---|" + "---|" * (2 * len(sizes) + len(pairs))]
    for step in steps:
        cpu_cells, wall_cells, cpus = [], [], []
        for r in results:
            s = r.get("steps", {}).get(step, {})
            done = s.get("status") == "success"
            mark = "" if not s or done else f" ({s.get('status')})"
            cpu_cells.append(_fmt(s.get("cpu_s")) + mark)
            wall_cells.append(_fmt(s.get("seconds")) + mark)
            cpus.append(s.get("cpu_s") if done else None)
        by_size = dict(zip(sizes, cpus, strict=True))
        exps = [growth_exponent(a, by_size[a], b, by_size[b]) if by_size[a] is not None and by_size[b] is not None
                else None for a, b in pairs]
        lines.append(f"| {step} | " + " | ".join(cpu_cells + wall_cells)
                     + "".join(" | -" if e is None else f" | {e:.2f}" for e in exps) + " |")
    with_ref = [r for r in finished if r.get("matrix_reference")]
    if with_ref:
        lines += ["", "## The study matrix: built once, read four times", "",
                  f"Reference: before issue 14 each of the {MATRIX_READERS} readers (missingness_profile, imputation_benchmark, "
                  "imputed_dataset, synthesizer_model) rebuilt the subject x visit matrix from bronze; now the "
                  "`study_matrix` asset builds it once and each reader reads its Parquet files. Timed in the same run, "
                  "after the pipeline:", "",
                  "| subjects | one build (s) | one read (s) | before: 4 builds (s) | now: 1 build + 4 reads (s) | speed-up |",
                  "|---|---|---|---|---|---|"]
        for r in with_ref:
            m = r["matrix_reference"]
            old, new = MATRIX_READERS * m["build_s"], m["build_s"] + MATRIX_READERS * m["read_s"]
            lines.append(f"| {r['subjects']:,} | {m['build_s']:.2f} | {m['read_s']:.3f} | {old:.2f} | {new:.2f} | {old / new:.1f}x |")
    with_imp = [r for r in finished if r.get("imputation_reference")]
    if with_imp:
        lines += ["", "## The stage that grew worst: the imputer comparison", "",
                  "`imputation_benchmark` grew fastest (CPU exponent above 3 between 5,000 and 20,000 subjects, "
                  "table above or in the first measurement below): KNN's exact search on rounded, tie-heavy values "
                  "widens for more and more cells as rows grow. The asset now compares the candidates on at most "
                  "`BENCHMARK_MAX_ROWS` subject-visits (a seeded sample of whole subjects; the winner still fills every "
                  "row). Reference timed in the same run, after the pipeline: the same comparison on every row.", "",
                  "| subjects | rows: all / compared | CPU s: all rows | CPU s: sample | speed-up | winner: all / sample | "
                  "RMSE all rows | RMSE sample |", "|---|---|---|---|---|---|---|---|"]
        for r in with_imp:
            a, b = r["imputation_reference"]["all_rows"], r["imputation_reference"]["sample"]
            if a["rows"] == b["rows"]:
                lines.append(f"| {r['subjects']:,} | {a['rows']:,} / every row (under the cap) | {a['cpu_s']:.1f} | - | - | "
                             f"{a['winner']} | {_rmse(a['rmse'])} | - |")
                continue
            lines.append(f"| {r['subjects']:,} | {a['rows']:,} / {b['rows']:,} | {a['cpu_s']:.1f} | {b['cpu_s']:.1f} | "
                         f"{a['cpu_s'] / max(b['cpu_s'], 1e-3):.1f}x | {a['winner']} / {b['winner']} | {_rmse(a['rmse'])} | "
                         f"{_rmse(b['rmse'])} |")
    before = {r["subjects"]: r for r in (before_fix or [])}
    if before:
        lines += ["", "## Before and after the fixes (CPU seconds per stage, separate runs)", "",
                  "Before: the first measurement (study matrix already one asset; imputer comparison on every row; "
                  "every dbt step parsing the whole project). After: the tables above. dbt steps now reuse the run's "
                  "parse state (assets/warehouse.py `_parse_state`).", "",
                  "| subjects | imputation_benchmark before / after | dbt steps before / after | run process + dbt before / after |",
                  "|---|---|---|---|"]
        for r in finished:
            b = before.get(r["subjects"])
            if not b or b.get("run_id") == r.get("run_id"):  # this size was not measured again after the fixes
                continue
            cpu = _stage_cpu
            lines.append(
                f"| {r['subjects']:,} | {cpu(b, lambda k: k == 'imputation_benchmark'):.1f} / "
                f"{cpu(r, lambda k: k == 'imputation_benchmark'):.1f} | {cpu(b, lambda k: k.startswith('dbt_')):.1f} / "
                f"{cpu(r, lambda k: k.startswith('dbt_')):.1f} | {b['cpu_s'] + b['dbt_cpu_s']:.0f} / {r['cpu_s'] + r['dbt_cpu_s']:.0f} |")
    for r in results:
        if r.get("dashboards_error"):
            lines += ["", f"## Dashboards on the {r['subjects']:,}-subject marts", "",
                      f"Not timed: bench_dashboards.py's Superset harness failed ({r['dashboards_error']})."]
        if r.get("dashboards"):
            charts = r["dashboards"]["charts"]
            worst = max(charts, key=lambda c: c["p95"])
            lines += ["", f"## Dashboards on the {r['subjects']:,}-subject marts", "",
                      f"bench_dashboards.py's harness (Superset as `make superset` runs it, tenant user `acme_viewer`, "
                      f"`force=true`, {r['dashboards']['reps']} runs per chart) on this run's warehouse. "
                      f"Worst chart p95: {worst['p95'] * 1000:.0f} ms ({worst['dashboard']} / {worst['chart']}).", "",
                      "| dashboard | chart | rows | p50 (ms) | p95 (ms) | p95 DuckDB direct (ms) |", "|---|---|---|---|---|---|"]
            lines += [f"| {c['dashboard']} | {c['chart'].replace('|', '/')} | {c['rows']:,} | {c['p50'] * 1000:.0f} | "
                      f"{c['p95'] * 1000:.0f} | {c['p95_direct'] * 1000:.1f} |" for c in charts]
    if definitions:
        lines += _definitions_markdown(definitions)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[1_000, 5_000, 20_000], help="none: no pipeline run")
    p.add_argument("--sites", type=int, default=60)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="300 and 1,000 subjects")
    p.add_argument("--timeout-min", type=float, default=180, help="per size; a size out of time keeps its finished steps")
    p.add_argument("--dashboards", action="store_true", help="time the dashboards on the largest finished size")
    p.add_argument("--reps", type=int, default=5, help="runs per chart with --dashboards")
    p.add_argument("--definitions", type=int, default=0, metavar="ROUNDS",
                   help="time the definitions load (and its parts) this many rounds")
    p.add_argument("--baseline", help="with --definitions: also time the definitions of this commit (before)")
    p.add_argument("--keep", type=Path, help="keep each size's data folder under this directory (default: a temp dir, removed)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return run_child(args.child, args.sites, args.seed, args.work)
    sizes = [300, 1_000] if args.quick else args.sizes
    raw = json.loads(RAW.read_text()) if RAW.exists() else {}
    raw = {"sizes": raw} if isinstance(raw, list) else raw  # the first format: the sizes only
    previous = {r["subjects"]: r for r in raw.get("sizes", [])}
    if args.definitions:
        log(f"== definitions load, {args.definitions} rounds")
        raw["definitions_load"] = definitions_load(args.definitions, args.baseline)
    keep = args.keep.resolve() if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        log(f"== {n:,} subjects, {args.sites} sites (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        result = run_size(n, args.sites, args.seed, args.timeout_min * 60, keep)
        log(f"[{n:,}] {result['status']} in {result['wall_s']:.0f} s")
        previous[n] = result
    largest = max((r for r in previous.values() if r["status"] == "SUCCESS" and Path(r.get("warehouse", "")).exists()),
                  key=lambda r: r["subjects"], default=None)
    if args.dashboards and largest is not None:
        log(f"== dashboards on the {largest['subjects']:,}-subject marts")
        try:
            largest["dashboards"] = _dashboards(Path(largest["warehouse"]), args.reps)
        except Exception as exc:  # the pipeline's results are written whatever happens to Superset
            largest["dashboards_error"] = f"{type(exc).__name__}: {exc}"
            log(f"dashboards not timed: {largest['dashboards_error']}")
    for r in previous.values():
        if not keep and r.get("work") and Path(r["work"]).exists() and r["subjects"] in sizes:
            shutil.rmtree(r["work"], ignore_errors=True)
    raw["sizes"] = sorted(previous.values(), key=lambda r: r["subjects"])
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(raw, indent=1, default=str))
    line = ".venv/bin/python benchmarks/bench_full_size.py " + " ".join(argv if argv is not None else sys.argv[1:])
    RESULTS.write_text(markdown(raw["sizes"], line.strip(), raw.get("definitions_load"), raw.get("before_fix")))
    log(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
