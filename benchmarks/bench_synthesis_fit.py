"""Fit time of the synthesizers at 1k, 10k and 100k rows x 20 columns, with speed ratios against the
reference implementations (sdv-dev ``ctgan`` CTGAN and ``copulas`` GaussianMultivariate) timed in
the same run on identical data and settings.

    .venv/bin/python benchmarks/bench_synthesis_fit.py            # full run, writes the results file
    .venv/bin/python benchmarks/bench_synthesis_fit.py --quick    # 1k and 10k rows only

The reference packages are not project dependencies; install them outside the venv and point
PYTHONPATH at them, e.g. ``pip install --target /tmp/ctgan_ref --no-deps ctgan==0.12.1 rdt==2.0.0
faker tqdm copulas`` then ``PYTHONPATH=/tmp/ctgan_ref``. Without them the ratio table says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.synth import CTGANSynthesizer, GaussianCopulaSynthesizer, TableSchema  # noqa: E402
from models.synth.transformers import TableEncoder  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "synthesis_fit.md"
# equal work for both GAN implementations in the ratio table: about 200 generator steps
REF_EPOCHS = {1_000: 100, 10_000: 10, 100_000: 1}


def make_trial_like(n: int, seed: int = 0) -> pd.DataFrame:
    """Subject-level table, shape (n, 20): 6 categorical, 1 ordinal, 1 date, 12 numeric columns with
    clinical-style dependencies and 5-10% missing labs."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n, p=[0.55, 0.45])
    age = np.clip(rng.normal(70, 8, n), 50, 89).round().astype(int)
    height = np.where(sex == "M", rng.normal(176, 7, n), rng.normal(162, 6, n))
    weight = 25 * (height / 100) ** 2 + rng.normal(0, 12, n)
    bmi = weight / (height / 100) ** 2
    smoker = rng.random(n) < 0.2
    sbp = 110 + 0.5 * age + 0.4 * bmi + rng.normal(0, 12, n)
    alt = np.exp(rng.normal(3.0, 0.4, n))
    glucose = np.where(rng.random(n) < 0.2, rng.normal(160, 30, n), rng.normal(95, 10, n))
    df = pd.DataFrame(
        {
            "ARM": rng.choice(["Placebo", "Xanomeline Low", "Xanomeline High"], n),
            "SEX": sex,
            "RACE": rng.choice(
                ["WHITE", "BLACK", "ASIAN", "AMERICAN INDIAN", "OTHER"], n, p=[0.8, 0.1, 0.06, 0.02, 0.02]
            ),
            "REGION": rng.choice(["EU", "NA", "APAC", "LATAM"], n),
            "BIOMARKER_STRATUM": np.where(rng.random(n) < 1 / (1 + np.exp(-(age - 72) / 5)), "high", "low"),
            "SMOKER": smoker,
            "ECOG": pd.Categorical(
                np.clip(np.floor((age - 50) / 15 + rng.normal(0, 0.6, n)), 0, 2).astype(int),
                [0, 1, 2],
                ordered=True,
            ),
            "RANDDT": pd.Timestamp("2021-01-04") + pd.to_timedelta(rng.integers(0, 540, n), unit="D"),
            "AGE": age,
            "HEIGHT": height.round(1),
            "WEIGHT": weight.round(1),
            "BMI": bmi,
            "SBP": sbp,
            "DBP": 0.5 * sbp + rng.normal(15, 6, n),
            "HR": rng.normal(72, 10, n) + 4 * smoker,
            "ALT": alt,
            "AST": alt * np.exp(rng.normal(0.1, 0.2, n)),
            "CREAT": np.exp(rng.normal(0, 0.25, n)) * (1.1 + 0.2 * (sex == "M")),
            "GLUCOSE": glucose,
            "HBA1C": 4 + glucose / 40 + rng.normal(0, 0.3, n),
        }
    )
    for col, rate in [("ALT", 0.05), ("AST", 0.05), ("HBA1C", 0.1)]:
        df.loc[rng.random(n) < rate, col] = np.nan
    return df


def timed(fn, *args, **kwargs) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, fn(*args, **kwargs))"""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def ratio_row(
    n: int, what: str, epochs: str, ours_w: float, ours_c: float, ref_w: float, ref_c: float
) -> str:
    return (
        f"| {n:,} | {what} | {epochs} | {ours_w:.2f} | {ref_w:.2f} | {ours_c:.2f} | {ref_c:.2f} "
        f"| {ref_c / ours_c:.1f}x |"
    )


def reference_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The same table as the reference packages accept it: no NaN, dates as day offsets (our own
    encoder's model matrix, categorical codes mapped back to their labels)."""
    schema = TableSchema.infer(df)
    encoder = TableEncoder(schema).fit(df)
    matrix = encoder.transform(df, np.random.default_rng(0))
    frame = pd.DataFrame(matrix, columns=[c.name for c in encoder.columns_])
    discrete = [c.name for c in encoder.columns_ if c.discrete]
    for spec in schema.columns:
        if spec.discrete:
            frame[spec.name] = np.asarray([str(c) for c in spec.categories], dtype=object)[
                frame[spec.name].astype(int)
            ]
    for name in discrete:
        frame[name] = frame[name].astype(str)
    return frame, discrete


def run(sizes: list[int]) -> str:
    try:
        from copulas.multivariate import GaussianMultivariate
        from ctgan import CTGAN
    except ImportError:
        CTGAN = GaussianMultivariate = None  # noqa: N806
    load_before = os.getloadavg()
    fit_rows, ratio_rows = [], []
    for n in sizes:
        df = make_trial_like(n)
        wall, cpu, _ = timed(GaussianCopulaSynthesizer(random_state=0).fit, df)
        fit_rows.append(f"| {n:,} | Gaussian copula | default | {wall:.2f} | {cpu:.2f} | - |")
        print(fit_rows[-1], flush=True)
        records: list[dict] = []
        gan = CTGANSynthesizer(random_state=0, progress=records.append)
        wall, cpu, gan = timed(gan.fit, df)
        transform_s = next(r["elapsed_s"] for r in records if r["stage"] == "transform")
        fit_rows.append(
            f"| {n:,} | CTGAN | {gan.epochs_} epochs = {gan.epochs_ * max(n // 500, 1)} steps "
            f"| {wall:.1f} | {cpu:.1f} | {transform_s:.1f} |"
        )
        print(fit_rows[-1], flush=True)
        if CTGAN is None:
            continue
        ref_df, discrete = reference_frame(df)
        numeric = ref_df.copy()
        for name in discrete:
            numeric[name] = numeric[name].astype("category").cat.codes.astype(float)
        ours_w, ours_c, _ = timed(GaussianCopulaSynthesizer(random_state=0).fit, df)
        ref_w, ref_c, _ = timed(
            lambda numeric=numeric: GaussianMultivariate(
                distribution="copulas.univariate.BetaUnivariate"
            ).fit(numeric)
        )
        ratio_rows.append(
            ratio_row(n, "copula vs copulas.GaussianMultivariate(beta)", "-", ours_w, ours_c, ref_w, ref_c)
        )
        print(ratio_rows[-1], flush=True)
        epochs = REF_EPOCHS.get(n, 1)
        ours_w, ours_c, _ = timed(CTGANSynthesizer(epochs=epochs, random_state=0).fit, df)
        ref = CTGAN(epochs=epochs, batch_size=500, pac=10)
        ref.set_random_state(0)
        ref_w, ref_c, _ = timed(ref.fit, ref_df, discrete_columns=discrete)
        ratio_rows.append(ratio_row(n, "CTGAN vs ctgan.CTGAN", str(epochs), ours_w, ours_c, ref_w, ref_c))
        print(ratio_rows[-1], flush=True)
    load_after = os.getloadavg()
    lines = [
        "# Synthesizer fit time",
        "",
        f"Date: {dt.date.today().isoformat()}. Machine: 2 CPU cores ({platform.processor() or platform.machine()}), "
        f"shared with other jobs (1-min load average {load_before[0]:.1f} at start, {load_after[0]:.1f} at end); "
        f"torch {torch.__version__} on CPU, {torch.get_num_threads()} thread(s).",
        "",
        f"Rerun: `.venv/bin/python benchmarks/bench_synthesis_fit.py{'' if 100_000 in sizes else ' --quick'}` "
        "(ratio table: with the reference packages on PYTHONPATH, see the module docstring).",
        "",
        "Data: `make_trial_like(n)` in the benchmark, 20 columns (6 categorical, 1 ordinal, 1 date, 12 numeric, "
        "3 with missing values). Wall seconds are elapsed time; CPU seconds are this process's CPU time, "
        "which is what the fit costs on an otherwise idle machine with one thread.",
        "",
        "## Default settings",
        "",
        "CTGAN defaults: batch 500, widths 256, `epochs=300` capped by `max_steps=3000` generator steps, so "
        "1k rows run 300 epochs, 10k rows 150 epochs and 100k rows 15 epochs. GMM column = mode-specific "
        "normalization (Bayesian GMM on at most 5,000 values per column) plus encoding.",
        "",
        "| rows | model | training | wall s | CPU s | GMM + encode s |",
        "| ---: | --- | --- | ---: | ---: | ---: |",
        *fit_rows,
        "",
        "## Speed against the reference implementations (same data, same settings, same run)",
        "",
    ]
    if ratio_rows:
        lines += [
            "Both GANs: batch 500, pac 10, widths 256, embedding 128, the same number of epochs (about 200 "
            "generator steps). Ratio = reference CPU time / ours (>1: ours is faster); CPU time, because "
            "wall time on this shared machine mostly measures the other jobs.",
            "",
            "| rows | comparison | epochs | ours wall s | ref wall s | ours CPU s | ref CPU s | ratio (CPU) |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            *ratio_rows,
        ]
    else:
        lines.append("Reference packages (ctgan, copulas) not importable in this run: no ratios measured.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k rows only")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)"
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="row counts (overrides --quick)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # the reference packages warn about pandas/sklearn versions
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    report = run(sizes)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
