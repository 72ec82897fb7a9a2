"""Evidence metrics of the Gaussian copula vs the conditional GAN on two subject-level tables: the real
CDISC pilot (cdiscpilot01) and the demo study, each split 80/20 into training rows and a real holdout.

    .venv/bin/python benchmarks/bench_synthesis.py            # full run, writes the results file
    .venv/bin/python benchmarks/bench_synthesis.py --quick    # CTGAN at 10 % of its steps, no file

Every synthesizer samples as many rows as its training set; the evidence pack
(:func:`models.evidence.build_evidence_pack`, utility target ARM) grades each summary metric
against the default thresholds. CTGAN runs at its defaults and at one tuned setting
(:data:`CTGAN_TUNED`). Fit time at 1k/10k/100k rows is in ``synthesis_fit.md``
(``bench_synthesis_fit.py``), not rerun here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.synthesis import training_split  # noqa: E402
from models.evidence import build_evidence_pack  # noqa: E402
from models.synth import BaseSynthesizer, CTGANSynthesizer, GaussianCopulaSynthesizer  # noqa: E402
from models.tables import observations_long, subject_baseline_table  # noqa: E402
from trialsynth.demo.generator import generate_study  # noqa: E402
from trialsynth.ingest.readers import read_file  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "synthesis.md"
PILOT_SDTM = Path(__file__).resolve().parents[2] / "shared" / "data" / "cdiscpilot01" / "sdtm"
SEED = 7
HOLDOUT = 0.2
TARGET = "ARM"
THREADS = 2
MIN_OBSERVED = 0.05  # see drop_sparse
# Tuned CTGAN: the training tables have a few hundred rows, so the default batch of 500 is the
# whole table and 300 epochs are only 300 generator steps. Batches of 100 give 4-5x the steps in
# the same number of epochs, and lr 1e-3 (5x the default) moves further per step.
CTGAN_TUNED = {"batch_size": 100, "generator_lr": 1e-3, "discriminator_lr": 1e-3}
SUMMARY_METRICS = [
    "correlation_delta_mean",
    "correlation_delta_max",
    "detection_auc",
    "utility_ratio",
    "dcr_share_below_holdout_p5",
    "dcr_median_ratio",
    "nndr_median_ratio",
    "exact_copy_share",
    "mia_auc",
]
PER_COLUMN_MEANS = {"wasserstein": "wasserstein (mean)", "ks_statistic": "ks_statistic (mean)"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pilot_baseline() -> pd.DataFrame:
    """One row per randomized subject of the CDISC pilot (dm.xpt, vs.csv, lb.csv)."""
    dm, vs, lb = (read_file(PILOT_SDTM / name)[0] for name in ("dm.xpt", "vs.csv", "lb.csv"))
    return subject_baseline_table(dm, observations_long(vs, lb, dm))


def _as_bronze(frame: pd.DataFrame) -> pl.DataFrame:
    """A generator frame as ingestion stores it: categoricals as strings, datetimes as ISO text."""
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(str)
        elif pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return pl.from_pandas(out)


def demo_baseline() -> pd.DataFrame:
    """One row per randomized subject of the demo study ACME-001 (600 screened, 12 sites, seed 7)."""
    tables = generate_study("acme", "ACME-001", n_subjects=600, n_sites=12, seed=7)
    dm, vs, lb = (_as_bronze(tables[name]) for name in ("dm", "vs", "lb"))
    return subject_baseline_table(dm, observations_long(vs, lb, dm))


def drop_sparse(train: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Training rows without columns observed in fewer than MIN_OBSERVED of them.

    Needed because the evidence pack's gradient-boosting classifiers crash (sklearn's binning of a
    column with no value) when a CV fold or the synthetic frame has a column with no observed value,
    which happens for the pilot's urinalysis/morphology labs measured in 1-7 of 203 subjects.
    """
    sparse = [c for c in train.columns if train[c].notna().mean() < MIN_OBSERVED]
    return train.drop(columns=sparse), sparse


def synthesizers(step_scale: float) -> dict[str, Callable[[], BaseSynthesizer]]:
    """Name -> factory; ``step_scale`` < 1 shortens CTGAN training (--quick)."""
    epochs = max(1, round(300 * step_scale))
    common = {"random_state": SEED, "num_threads": THREADS, "epochs": epochs}
    return {
        "Gaussian copula": lambda: GaussianCopulaSynthesizer(random_state=SEED),
        "CTGAN default": lambda: CTGANSynthesizer(**common),
        "CTGAN tuned": lambda: CTGANSynthesizer(**common, **CTGAN_TUNED),
    }


def evaluate(name: str, model: BaseSynthesizer, train: pd.DataFrame, holdout: pd.DataFrame) -> dict:
    """Fit, sample len(train) rows, build the evidence pack; one result row (value, level per metric)."""
    start = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - start
    synthetic = model.sample(len(train), random_state=SEED)[train.columns]
    categorical = [c for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])]
    start = time.perf_counter()
    pack = build_evidence_pack(train, synthetic, holdout, categorical, target=TARGET,
                               run_id=f"bench-{name}", random_state=SEED)
    frame = pack.metrics_frame()
    row: dict = {"model": name, "fit_s": fit_s, "evidence_s": time.perf_counter() - start,
                 "epochs": getattr(model, "epochs_", None), "overall": pack.overall_level}
    if isinstance(model, CTGANSynthesizer):  # steps per epoch as CTGANSynthesizer._train computes them
        batch = min(model.batch_size, len(train) - len(train) % model.pac)
        row["steps"] = model.epochs_ * max(1, len(train) // batch)
    summary = frame[frame["variable"].isna() | (frame["metric"] == "utility_ratio")]
    for rec in summary.itertuples():
        row[rec.metric] = (rec.value, rec.level)
    for metric, label in PER_COLUMN_MEANS.items():
        per_col = frame[frame["metric"] == metric]
        worst = per_col["level"].map({"pass": 0, "warn": 1, "fail": 2}).max()
        row[label] = (per_col["value"].mean(), f"{(per_col['level'] == 'pass').sum()}/{len(per_col)} pass"
                      + ("" if worst == 0 else f", worst {['pass', 'warn', 'fail'][int(worst)]}"))
    return row


def run_dataset(label: str, baseline: pd.DataFrame, step_scale: float) -> tuple[list[dict], str]:
    train, holdout = training_split(baseline, HOLDOUT, SEED)
    train, sparse = drop_sparse(train)
    holdout = holdout[train.columns]
    note = (f"{label}: {len(baseline)} subjects -> {len(train)} training / {len(holdout)} holdout rows, "
            f"{train.shape[1]} columns ({sum(not pd.api.types.is_numeric_dtype(train[c]) for c in train)} "
            f"categorical)" + (f"; dropped, observed in < {MIN_OBSERVED:.0%} of training rows: {', '.join(sparse)}" if sparse else ""))
    log(note)
    rows = []
    for name, factory in synthesizers(step_scale).items():
        log(f"{label}: fitting {name}")
        row = evaluate(name, factory(), train, holdout)
        log(f"{label}: {name} fit {row['fit_s']:.1f} s, evidence {row['evidence_s']:.1f} s, "
            f"detection AUC {row['detection_auc'][0]:.3f}, corr delta mean {row['correlation_delta_mean'][0]:.3f}")
        rows.append({"dataset": label, **row})
    return rows, note


def fmt(cell: object) -> str:
    if isinstance(cell, tuple):
        value, level = cell
        return f"{value:.3f} {level}"
    return "-" if cell is None else str(cell)


def metric_table(rows: list[dict]) -> str:
    """Metrics as rows, one column per (dataset, model)."""
    header = "| metric | " + " | ".join(f"{r['dataset']}: {r['model']}" for r in rows) + " |"
    lines = [header, "| --- |" + " ---: |" * len(rows)]
    lines.append("| fit s (wall) | " + " | ".join(f"{r['fit_s']:.1f}" for r in rows) + " |")
    lines.append("| CTGAN epochs / generator steps | "
                 + " | ".join(f"{r['epochs']} / {r['steps']}" if r.get("steps") else "-" for r in rows) + " |")
    for metric in [*SUMMARY_METRICS, *PER_COLUMN_MEANS.values()]:
        lines.append(f"| {metric} | " + " | ".join(fmt(r.get(metric)) for r in rows) + " |")
    lines.append("| overall (worst level, all metrics) | " + " | ".join(r["overall"] for r in rows) + " |")
    return "\n".join(lines)


def verdict(rows: list[dict]) -> str:
    """Per dataset: which model has the lowest correlation delta and detection AUC; the issue's target."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == dataset]
        copula = next(r for r in sub if r["model"] == "Gaussian copula")
        for metric in ("correlation_delta_mean", "correlation_delta_max", "detection_auc"):
            best = min(sub, key=lambda r: r[metric][0])
            gans = ", ".join(f"{r['model']} {r[metric][0]:.3f}" for r in sub if r is not copula)
            out.append(f"- {dataset}, {metric}: lowest = {best['model']} ({best[metric][0]:.3f}); "
                       f"copula {copula[metric][0]:.3f}, {gans}.")
    return "\n".join(out)


def target_met(rows: list[dict], dataset: str) -> str:
    sub = [r for r in rows if r["dataset"] == dataset]
    copula = next(r for r in sub if r["model"] == "Gaussian copula")
    lines = []
    for r in sub:
        if r is copula:
            continue
        beats = {m: r[m][0] < copula[m][0] for m in ("correlation_delta_mean", "detection_auc")}
        lines.append(f"- {r['model']}: correlation delta mean {'beats' if beats['correlation_delta_mean'] else 'does NOT beat'}"
                     f" the copula, detection AUC {'beats' if beats['detection_auc'] else 'does NOT beat'} it"
                     f" -> target {'MET' if all(beats.values()) else 'NOT met'}.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CTGAN at 10%% of its epochs; results not written")
    args = parser.parse_args()
    step_scale = 0.1 if args.quick else 1.0
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    rows, notes = [], []
    for label, loader in (("CDISC pilot", pilot_baseline), ("demo ACME-001", demo_baseline)):
        dataset_rows, note = run_dataset(label, loader(), step_scale)
        rows += dataset_rows
        notes.append(note)
    total_s = time.perf_counter() - started
    text = report(rows, notes, total_s, load_start, quick=args.quick)
    print(text)
    if not args.quick:
        RESULTS.write_text(text + "\n")
        log(f"wrote {RESULTS}")
    return 0


def report(rows: list[dict], notes: list[str], total_s: float, load_start: float, quick: bool) -> str:
    date = dt.date.today().isoformat()
    return f"""# Synthesizer evidence: Gaussian copula vs CTGAN{" (--quick: NOT the reported numbers)" if quick else ""}

Date: {date}. Machine: 2 CPU cores ({platform.machine()}), shared with other jobs (1-min load average \
{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end); torch {torch.__version__} on CPU, \
`num_threads={THREADS}`. Whole run: {total_s / 60:.1f} min.

Rerun: `.venv/bin/python benchmarks/bench_synthesis.py` (`--quick` for a smoke run that writes nothing).

Data (subject-level baseline tables from `models.tables.subject_baseline_table`, SITEID dropped and
split 80/20 with `assets.synthesis.training_split(baseline, holdout={HOLDOUT}, seed={SEED})`):

{chr(10).join(f"- {n}" for n in notes)}

Models: `GaussianCopulaSynthesizer(random_state={SEED})`; `CTGANSynthesizer(random_state={SEED},
num_threads={THREADS})` at its defaults (epochs 300, batch 500 capped at the training rows, lr 2e-4,
max_steps 3000) and tuned with `{CTGAN_TUNED}`. Each samples as many rows as its training set
(`random_state={SEED}`); `build_evidence_pack(train, synthetic, holdout, categorical, target="{TARGET}",
random_state={SEED})` with the default thresholds. Cells: value and level (pass / warn / fail).
`wasserstein (mean)` and `ks_statistic (mean)` average the per-numeric-column values; the level
cell counts how many columns pass. `utility_ratio` is for target {TARGET}. Fit time is wall time on
the shared machine (it mostly measures the other jobs); CPU fit times at 1k / 10k / 100k rows are
in [synthesis_fit.md](synthesis_fit.md) (`bench_synthesis_fit.py`, not rerun here).

{metric_table(rows)}

## Which wins

{verdict(rows)}

## Target: "the GAN beats the copula on correlation delta and detection AUC on the demo study"

{target_met(rows, "demo ACME-001")}
"""


if __name__ == "__main__":
    sys.exit(main())
