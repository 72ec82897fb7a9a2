"""Differentially private synthesis at trial sizes: our DP Gaussian copula and MST against
smartnoise-synth's MST, AIM and DP-CTGAN (in their own venv) on the demo study and the CDISC pilot,
the same split for all; then the evidence pack's epsilon curve (fidelity, utility and membership-
inference AUC over epsilon) for each study.

    benchmarks/dp_venv.sh                                       # once: the reference venv .venv-dp
    .venv/bin/python benchmarks/bench_dp_synthesis.py           # full run (~30 min on 2 busy cores)
    .venv/bin/python benchmarks/bench_dp_synthesis.py --quick   # demo only, one seed, ours + reference MST, no file

Every synthesizer samples as many rows as its training set and is scored against the training rows
and the real holdout by :func:`models.evidence.epsilon_curve.score_synthetic` (the evidence pack's
metrics; utility target: the column the pack's automatic choice picks for the study). The column
domain (category sets and numeric bounds) is the same for every contender and treated as public (see
``public_domain``); one extra row fits our MST with the DP domain estimate instead, to show what
discovering it costs. The curve comes from the evidence pack itself (``epsilon_curve`` option) of the
study's configured synthesizer (the non-DP Gaussian copula); the packs are written under
benchmarks/out/dp_synthesis/ (ignored: they show patient-level rows).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_synthesis import HOLDOUT, demo_baseline, drop_sparse, pilot_baseline  # noqa: E402

from assets.synthesis import training_split  # noqa: E402
from models.evidence import build_evidence_pack, choose_utility_targets, write_pack  # noqa: E402
from models.evidence.encoding import clean_frame  # noqa: E402
from models.evidence.epsilon_curve import curve_rows, score_synthetic, standin_domain  # noqa: E402
from models.synth import GaussianCopulaSynthesizer  # noqa: E402
from models.synth.dp import DPGaussianCopulaSynthesizer, MSTSynthesizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "dp_synthesis.md"
PACKS = Path(__file__).parent / "out" / "dp_synthesis"
REFERENCE_PYTHON = ROOT / ".venv-dp" / "bin" / "python"
REFERENCE_SCRIPT = Path(__file__).parent / "dp_reference.py"
SPLIT_SEED = 7
SEEDS = (7, 8)
REFERENCE_TIMEOUT_S = 600  # per reference fit (MST, DP-CTGAN)
# AIM's default (16 x columns rounds) did not finish in 25 min on the demo table, and 4 x columns (180
# rounds) not in 600 s on the pilot's 45 columns: it runs a fixed number of rounds on both studies
# (4 x the demo's 24 columns, 2.1 x the pilot's) with a longer limit.
AIM_ROUNDS = 96
AIM_TIMEOUT_S = 900
DELTA = 1e-6
EPSILON = 1.0
DEMO, PILOT = "demo ACME-001", "CDISC pilot"
# Public category sets: the protocol's arms and strata, CDISC controlled terminology for SEX and RACE.
CDISC_SEX = ["F", "M", "U"]
CDISC_RACE = ["AMERICAN INDIAN OR ALASKA NATIVE", "ASIAN", "BLACK OR AFRICAN AMERICAN",
              "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER", "WHITE", "MULTIPLE", "OTHER", "UNKNOWN"]
PUBLIC_CATEGORIES = {
    DEMO: {"ARM": ["Placebo", "Xanomab 50 mg"], "SEX": CDISC_SEX, "RACE": CDISC_RACE, "BMKSTRAT": ["low", "high"]},
    PILOT: {"ARM": ["Placebo", "Xanomeline Low Dose", "Xanomeline High Dose"], "SEX": CDISC_SEX, "RACE": CDISC_RACE},
}
METRICS = ["correlation_delta_mean", "detection_auc", "utility_ratio", "mia_auc", "wasserstein (mean)"]
LOWER_IS_BETTER = {"correlation_delta_mean": True, "detection_auc": True, "utility_ratio": False,
                   "mia_auc": True, "wasserstein (mean)": True}
OURS = ("DP copula (ours)", "MST (ours)")
AIM = f"AIM (smartnoise), {AIM_ROUNDS} rounds"
REFERENCE = ("MST (smartnoise)", AIM, "DP-CTGAN (smartnoise)")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def public_domain(study: str, train: pd.DataFrame, categorical: list[str]) -> dict[str, dict]:
    """Column -> public spec: category sets from PUBLIC_CATEGORIES; numeric bounds from the training
    range rounded outward and the recorded precision (:func:`standin_domain`, as the evidence pack's
    curve does for columns its study config leaves open) - a stand-in for the protocol's plausible
    ranges and the CRF's precision, which a study config would give: read off the data, the one step
    here outside the budget."""
    public = {c: {"categories": cats} for c, cats in PUBLIC_CATEGORIES[study].items() if c in train.columns}
    return standin_domain(train, categorical, public)[0]


def utility_target(train: pd.DataFrame, categorical: list[str]) -> str | None:
    """The evidence pack's automatic utility target on the training rows (never the randomized arm)."""
    numeric = [c for c in train.columns if c not in categorical]
    targets = choose_utility_targets(clean_frame(train, categorical, numeric), categorical,
                                     random_state=SPLIT_SEED).targets
    return targets[0] if targets else None


def split(study: str, baseline: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    train, holdout = training_split(baseline, HOLDOUT, SPLIT_SEED)
    train, sparse = drop_sparse(train)
    n_cat = sum(not pd.api.types.is_numeric_dtype(train[c]) for c in train.columns)
    note = (f"{study}: {len(baseline)} randomized subjects -> {len(train)} training / {len(holdout)} holdout rows, "
            f"{train.shape[1]} columns ({n_cat} categorical)" + (f"; sparse columns dropped: {', '.join(sparse)}" if sparse else ""))
    return train, holdout[train.columns], note


Fit = Callable[[pd.DataFrame, int], tuple[pd.DataFrame, float, float]]


def ours(cls: type, epsilon: float, domain: dict, **extra) -> Fit:
    def fit(train: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        model = cls(epsilon=epsilon, delta=DELTA, columns=domain, random_state=seed, **extra).fit(train)
        fit_s, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
        return model.sample(len(train), random_state=seed), fit_s, fit_cpu
    return fit


def no_dp(train: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    model = GaussianCopulaSynthesizer(random_state=seed).fit(train)
    fit_s, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    return model.sample(len(train), random_state=seed), fit_s, fit_cpu


def reference(name: str, epsilon: float, domain: dict, categorical: list[str], *extra: str,
              timeout: int = REFERENCE_TIMEOUT_S) -> Fit:
    """A smartnoise-synth synthesizer run by dp_reference.py in .venv-dp (fit time measured there,
    killed after ``timeout`` s); MST and AIM bin numeric columns into as many bins as our MST chooses
    for the same table and budget."""
    def fit(train: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, float, float]:
        bins = MSTSynthesizer(epsilon=epsilon, delta=DELTA, columns=domain, random_state=seed).fit(train).n_bins_
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            train.to_parquet(tmp / "train.parquet", index=False)
            bounds = {c: [s["min_value"], s["max_value"]] for c, s in domain.items() if "min_value" in s}
            (tmp / "bounds.json").write_text(json.dumps(bounds))
            cmd = [str(REFERENCE_PYTHON), str(REFERENCE_SCRIPT), "--train", str(tmp / "train.parquet"),
                   "--out", str(tmp / "synthetic.parquet"), "--synthesizer", name, "--epsilon", str(epsilon),
                   "--delta", str(DELTA), "--bounds", str(tmp / "bounds.json"), "--categorical", ",".join(categorical),
                   "--rows", str(len(train)), "--seed", str(seed), "--bins", str(bins), *extra]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{name} did not finish within {timeout} s") from None
            if done.returncode:
                raise RuntimeError(f"{name} failed: {done.stderr.strip()[-2000:]}")
            timing = json.loads(done.stdout.strip().splitlines()[-1])
            synthetic = pd.read_parquet(tmp / "synthetic.parquet")
        for col in train.columns:  # parquet round trip: restore the training dtypes for the evidence pack
            if pd.api.types.is_numeric_dtype(train[col]):
                synthetic[col] = pd.to_numeric(synthetic[col], errors="coerce")
            else:
                synthetic[col] = synthetic[col].astype(object).where(synthetic[col].notna(), None).astype(train[col].dtype)
        return synthetic, timing["fit_seconds"], timing["fit_cpu_seconds"]
    return fit


def evaluate(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, target: str | None,
             seed: int) -> dict:
    """The evidence pack's summary metrics of one synthetic table (columns left all missing left out)."""
    categorical = [c for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])]
    row = score_synthetic(train, synthetic, holdout, categorical, target, random_state=seed)
    row["wasserstein (mean)"], row["empty_columns"] = row.pop("wasserstein_mean"), row.pop("columns_all_missing")
    return row


def run_contender(study: str, name: str, fit: Fit, train: pd.DataFrame, holdout: pd.DataFrame,
                  target: str | None, seeds: tuple[int, ...], epsilon: float | None) -> list[dict]:
    rows = []
    for seed in seeds:
        log(f"{study}: {name} at epsilon={epsilon}, seed {seed}")
        try:
            synthetic, fit_s, fit_cpu = fit(train, seed)
            row = {**evaluate(train, holdout, synthetic[train.columns], target, seed), "fit_s": fit_s,
                   "fit_cpu_s": fit_cpu}
        except (RuntimeError, ValueError) as exc:
            log(f"  failed: {exc}")
            row = {"error": str(exc).splitlines()[-1][:200]}
        rows.append({"study": study, "model": name, "epsilon": epsilon, "seed": seed, **row})
    return rows


def cell(rows: list[dict], metric: str) -> str:
    values = [r[metric] for r in rows if metric in r and not math.isnan(r[metric])]
    if not values:
        return next((f"failed: {r['error']}" for r in rows if "error" in r), "-")
    mean = float(np.mean(values))
    return f"{mean:.3f}" + (f" ± {float(np.std(values)):.3f}" if len(values) > 1 else "")


def main_table(results: list[dict], study: str, models: list[str]) -> str:
    groups = {m: [r for r in results if r["study"] == study and r["model"] == m and r["epsilon"] in (EPSILON, None)]
              for m in models}
    groups = {m: g for m, g in groups.items() if g}
    base = groups.get("MST (smartnoise)")
    base_cpu = np.mean([r["fit_cpu_s"] for r in base if "fit_cpu_s" in r]) if base else float("nan")
    lines = ["| metric | " + " | ".join(groups) + " |", "| --- |" + " ---: |" * len(groups)]
    for metric in METRICS:
        arrow = "lower" if LOWER_IS_BETTER[metric] else "higher"
        lines.append(f"| {metric} ({arrow} is better) | " + " | ".join(cell(g, metric) for g in groups.values()) + " |")
    lines.append("| fit s (wall) | " + " | ".join(cell(g, "fit_s") for g in groups.values()) + " |")
    lines.append("| fit s (CPU) | " + " | ".join(cell(g, "fit_cpu_s") for g in groups.values()) + " |")
    ratios = []
    for g in groups.values():
        cpu = [r["fit_cpu_s"] for r in g if "fit_cpu_s" in r]
        ratios.append(f"{np.mean(cpu) / base_cpu:.3g}x" if cpu and base_cpu == base_cpu else "-")
    lines.append("| fit CPU time vs smartnoise MST (same run) | " + " | ".join(ratios) + " |")
    lines.append("| columns sampled all-missing (left out of its scores) | "
                 + " | ".join(cell(g, "empty_columns") for g in groups.values()) + " |")
    return "\n".join(lines)


def curve_pack(study: str, train: pd.DataFrame, holdout: pd.DataFrame, categorical: list[str], domain: dict,
               seed: int) -> dict:
    """The evidence pack of the study's configured synthesizer (the non-DP Gaussian copula, as many rows
    as the training set) with the epsilon curve, as the pipeline builds it when the study config sets
    ``evidence.epsilon_curve`` (target "auto"); written under PACKS. Returns the curve section."""
    log(f"{study}: evidence pack with the epsilon curve")
    synthetic = GaussianCopulaSynthesizer(random_state=seed).fit(train).sample(len(train), random_state=seed)
    started = time.perf_counter()
    pack = build_evidence_pack(train, synthetic[train.columns], holdout, categorical, target="auto",
                               run_id=f"bench-dp-{study.split()[-1]}", random_state=seed,
                               epsilon_curve={"columns": domain, "delta": DELTA, "progress": log})
    paths = write_pack(pack, PACKS / study.split()[-1])
    curve = pack.details["epsilon_curve"]
    curve["seconds"] = time.perf_counter() - started
    log(f"  wrote {paths['html']} ({curve['seconds']:.0f} s with the curve)")
    return curve


def curve_table(curve: dict) -> str:
    header, rows = curve_rows(curve)
    lines = ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * (len(header) - 2)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def verdict(results: list[dict], study: str) -> str:
    """Per metric: the best contender at epsilon = 1 (means over seeds)."""
    lines = []
    for metric in ["correlation_delta_mean", "detection_auc", "utility_ratio", "mia_auc"]:
        means = {}
        for model in [*OURS, *REFERENCE]:
            values = [r[metric] for r in results if r["study"] == study and r["model"] == model
                      and r["epsilon"] == EPSILON and metric in r and not math.isnan(r[metric])]
            if values:
                means[model] = float(np.mean(values))
        if means:
            pick = min if LOWER_IS_BETTER[metric] else max
            best = pick(means, key=means.__getitem__)
            lines.append(f"- {study}, {metric}: " + ", ".join(f"{m} {v:.3f}" for m, v in means.items())
                         + f" -> best: **{best}**")
    return "\n".join(lines)


def report(results: list[dict], notes: list[str], curves: dict[str, dict], run: dict) -> str:
    studies = list(dict.fromkeys(r["study"] for r in results))
    main_models = [*OURS, "MST (ours), DP domain estimate", *REFERENCE, "Gaussian copula (no DP)"]
    tables = "\n\n".join(f"### {s}\n\n{main_table(results, s, main_models)}" for s in studies)
    curve_text = "\n\n".join(
        f"### {s}\n\nutility target: {c['target']}; {c['rows']['train']} training / {c['rows']['holdout']} holdout "
        f"rows; pack with the curve built in {c['seconds']:.0f} s; columns whose domain the pack had to read off the "
        f"training rows beyond the benchmark's domain above: {', '.join(c['domain']['read_off_training_data']) or 'none'}\n\n{curve_table(c)}"
        for s, c in curves.items())
    verdicts = "\n".join(verdict(results, s) for s in studies)
    return f"""# Differentially private synthesis: ours vs smartnoise-synth, and the epsilon curve

Date: {run["date"]}. Machine: 2 CPU cores ({platform.machine()}), shared with other jobs (1-min load
average {run["load_start"]:.1f} at start, {run["load_end"]:.1f} at end). Whole run: {run["total_s"] / 60:.1f} min.

Rerun: `benchmarks/dp_venv.sh` once (smartnoise-synth 1.0.8 in `.venv-dp`: it pins pandas 2.3 and opacus
0.14, so it stays out of the product venv), then `nice .venv/bin/python benchmarks/bench_dp_synthesis.py`
(`--quick`: demo only, one seed, no AIM / DP-CTGAN, writes nothing). The evidence packs with the curve
(JSON + HTML report) land in `benchmarks/out/dp_synthesis/<study>/` (not committed: they show patient rows).

Data: subject-level baseline tables, SITEID dropped, split 80/20 by
`assets.synthesis.training_split(baseline, holdout={HOLDOUT}, seed={SPLIT_SEED})` (every contender gets the same split):

{chr(10).join(f"- {n}" for n in notes)}

Privacy: every DP contender at epsilon = {EPSILON:g}, delta = {DELTA:g}. Ours: `DPGaussianCopulaSynthesizer` /
`MSTSynthesizer(epsilon, delta, columns=domain, random_state=seed)` at their defaults (`n_bins="auto"`:
round(sqrt(n / sigma)) bins per numeric column, clipped to [4, 32], from public quantities; copula: half the
budget on the marginals, rows clipped at 1.5 sqrt(d)). Neighbouring tables differ in one *replaced* subject (the
number of subjects is public), so a histogram has L2 sensitivity sqrt(2); smartnoise calibrates to
one *added or removed* row (sensitivity 1): at the same nominal epsilon the reference adds about 1/sqrt(2)
of our noise, which favours it. Domain: the same for all contenders: category sets of ARM (protocol),
SEX and RACE (CDISC CT), BMKSTRAT (protocol); numeric bounds = the training range rounded outward to two
significant digits of its width, and the recorded precision (whole numbers or decimals), a stand-in for the
plausible ranges and CRF precision a study config gives (`models.evidence.epsilon_curve.standin_domain`; read
off the data: the one step of this benchmark outside the budget; the row "MST (ours), DP domain estimate" takes
only the category sets and spends 10% of its budget on DP bounds instead). Precision matters: synthetic ages
spread over fractions of a year are told from recorded whole years by the detection classifier alone (AUC 0.88
on AGE by itself in a first run without it). smartnoise reads category sets from the data (a further leak in its
favour); its MST and AIM bin the numeric columns into as many bins as our MST, its DP-CTGAN min-max scales them;
defaults otherwise (DP-CTGAN: 300 epochs, noise multiplier 5, stops when the budget is spent).

**AIM is bounded**: smartnoise's default of 16 x columns rounds did not finish in 25 min on the demo table and
4 x columns (180 rounds) not in 600 s on the pilot (a previous run), so AIM runs a fixed {AIM_ROUNDS} rounds on both
studies (4 x the demo's columns, about 2 x the pilot's; each round selects and measures one 2-way marginal and
refits the graphical model) with max_model_size 80 (its default) and a {AIM_TIMEOUT_S} s limit per fit. Fewer
rounds leave it fewer 2-way marginals (on the pilot the one-way marginals take about 40% of its budget).

Scores: `models.evidence.epsilon_curve.score_synthetic` (the evidence pack's metrics, computed as
`build_evidence_pack` computes them, utility without its bootstrap interval) on as many synthetic rows as training
rows; utility: train on synthetic / train on real, predicting the column the pack's automatic choice picks on the
training rows (never the randomized arm, whose real-data AUC is about 0.5: the target is named per study above
and below). At epsilon = {EPSILON:g} ours and the non-DP copula: mean ± sd over seeds {", ".join(map(str, run["seeds"]))};
the smartnoise synthesizers: seed {run["seeds"][0]} only (the reference fits are slow). Single-seed DP numbers carry
the mechanism's noise: differences below about 0.05 are not meaningful. `wasserstein (mean)` averages the
per-numeric-column distance scaled by the real IQR. A column a synthesizer returns all missing is left out
of its scores (counted in the last row). Fit time: ours in process; the reference's measured inside its
worker (imports excluded); the ratio row divides process CPU seconds by smartnoise MST's in the same run. The
pilot runs in a second process while the demo runs (their slow reference fits overlap on the two cores): wall
times and the reference fits' time limits include that contention.

## epsilon = {EPSILON:g}: ours vs smartnoise-synth (and the non-DP copula for scale)

{tables}

## Which wins at epsilon = {EPSILON:g}

{verdicts}

## The evidence pack's epsilon curve (fidelity, utility and MIA AUC against epsilon)

Made by the evidence pack itself (`build_evidence_pack(..., epsilon_curve={{"columns": domain, "delta": {DELTA:g}}})`,
what the pipeline does when the study config sets `evidence.epsilon_curve: true`, as `data/studies/ACME-001.yaml`
and `CDISCPILOT01.yaml` do), for the pack of each study's configured synthesizer (the non-DP Gaussian copula):
each point refits the DP copula or MST on the same training rows at that epsilon (seed {run["seeds"][0]}), "none" is the
Gaussian copula without DP. Single fits: the epsilon = 1 column repeats the seed-{run["seeds"][0]} fits of the table above.

{curve_text}

## Choice

{run["choice"]}
"""


def choose(results: list[dict]) -> str:
    """The second mechanism by evidence: does marginal-based MST beat the DP-SGD GAN (smartnoise's
    DP-CTGAN, opacus) at epsilon = 1 on both fidelity scores, in every study?"""
    lines, mst_wins = [], []
    for study in dict.fromkeys(r["study"] for r in results):
        def mean(model: str, metric: str, study: str = study) -> float:
            values = [r[metric] for r in results if r["study"] == study and r["model"] == model
                      and r["epsilon"] == EPSILON and metric in r]
            return float(np.mean(values)) if values else float("nan")

        for metric in ("detection_auc", "correlation_delta_mean", "wasserstein (mean)"):
            mst, gan = mean("MST (ours)", metric), mean("DP-CTGAN (smartnoise)", metric)
            mst_wins.append(mst < gan)
            lines.append(f"- {study}, {metric}: MST (ours) {mst:.3f} vs DP-CTGAN (smartnoise) {gan:.3f}")
    won = sum(mst_wins)
    if won > len(mst_wins) / 2:
        lines.append(f"\nMST is ahead of the DP-SGD GAN on {won} of {len(mst_wins)} fidelity scores, fits in a fraction "
                     "of its time and needs no GPU: the second mechanism is MST (hand-written, "
                     "`models/synth/dp/mst.py`); a DP-SGD CTGAN (opacus) is not added to the product.")
    else:
        lines.append(f"\nMST is ahead of the DP-SGD GAN on only {won} of {len(mst_wins)} fidelity scores here: "
                     "revisit the choice of the second mechanism.")
    return "\n".join(lines)


def run_study(study: str, quick: bool, seeds: tuple[int, ...]) -> tuple[list[dict], str, dict]:
    """Every contender on one study, then its evidence pack with the curve: (results, note, curve)."""
    train, holdout, note = split(study, {DEMO: demo_baseline, PILOT: pilot_baseline}[study]())
    categorical = [c for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])]
    domain = public_domain(study, train, categorical)
    target = utility_target(train, categorical)
    contenders: list[tuple[str, Fit, tuple[int, ...], float | None]] = [
        ("DP copula (ours)", ours(DPGaussianCopulaSynthesizer, EPSILON, domain), seeds, EPSILON),
        ("MST (ours)", ours(MSTSynthesizer, EPSILON, domain), seeds, EPSILON),
        ("MST (ours), DP domain estimate", ours(MSTSynthesizer, EPSILON, {c: domain[c] for c in categorical},
                                                estimate_domain=True), seeds, EPSILON),
        ("MST (smartnoise)", reference("mst", EPSILON, domain, categorical), seeds[:1], EPSILON),
        ("Gaussian copula (no DP)", no_dp, seeds, None),
    ]
    if not quick:
        contenders += [(AIM, reference("aim", EPSILON, domain, categorical, "--aim-rounds", str(AIM_ROUNDS),
                                       timeout=AIM_TIMEOUT_S), seeds[:1], EPSILON),
                       ("DP-CTGAN (smartnoise)", reference("dpctgan", EPSILON, domain, categorical), seeds[:1], EPSILON)]
    results = []
    for name, fit, seeds_, eps in contenders:
        results += run_contender(study, name, fit, train, holdout, target, seeds_, eps)
    return results, f"{note}; utility target {target}", curve_pack(study, train, holdout, categorical, domain, seeds[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="demo only, one seed, ours + reference MST; no file")
    parser.add_argument("--study-json", metavar="PATH", help=argparse.SUPPRESS)  # worker: the pilot, results to PATH
    args = parser.parse_args()
    threadpool_limits(1)  # OpenMP/BLAS threads: the pack's setting; more only contend on a shared machine
    if not REFERENCE_PYTHON.exists():
        sys.exit(f"{REFERENCE_PYTHON} is missing: run benchmarks/dp_venv.sh first")
    seeds = SEEDS[:1] if args.quick else SEEDS
    if args.study_json:
        Path(args.study_json).write_text(json.dumps(run_study(PILOT, False, seeds)))
        return
    started = time.perf_counter()
    run = {"date": dt.date.today().isoformat(), "load_start": os.getloadavg()[0], "seeds": seeds}
    with tempfile.TemporaryDirectory() as tmp:
        # the pilot in a second process, at the same time as the demo: the slow reference fits of both
        # studies (smartnoise MST and AIM, one core each) overlap on the two cores
        pilot = None if args.quick else subprocess.Popen(
            [sys.executable, __file__, "--study-json", str(Path(tmp) / "pilot.json")])
        results, note, curve = run_study(DEMO, args.quick, seeds)
        notes, curves = [note], {DEMO: curve}
        if pilot is not None:
            if pilot.wait():
                sys.exit(f"the pilot's worker failed (exit {pilot.returncode}); see its log above")
            pilot_results, pilot_note, pilot_curve = json.loads((Path(tmp) / "pilot.json").read_text())
            results, notes, curves[PILOT] = results + pilot_results, notes + [pilot_note], pilot_curve
    run.update(load_end=os.getloadavg()[0], total_s=time.perf_counter() - started, choice=choose(results))
    text = report(results, notes, curves, run)
    if args.quick:
        print(text)
    else:
        RESULTS.write_text(text)
        log(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
