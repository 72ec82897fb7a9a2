"""Imputation benchmark: GAIN vs KNN, MICE, MissForest and mean on the GAIN paper's "Breast" data.

scikit-learn's breast cancer data (569 x 30), 20% of the cells hidden (MCAR, then MAR and MNAR via
``models.missingness.ampute``), RMSE on the min-max-scaled hidden cells (``models.impute.evaluate``),
mean +/- sd over repeats, next to Table 2 of Yoon et al. (ICML 2018). GAIN's speed is reported as a
ratio against a line-by-line torch port of the authors' reference loop (jsyoon0823/GAIN ``gain.py``:
autograd, ``torch.optim.Adam``, numpy sampling per iteration), timed on the same masked data in the
same run; the port's RMSE on that mask is shown as a correctness check.

Rerun: .venv/bin/python benchmarks/bench_imputation.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from models.impute.evaluate import EvaluationResult, evaluate_imputers, select_imputer
from models.impute.gain import GAINImputer
from models.missingness.ampute import ampute

OUT = Path(__file__).parent / "results" / "imputation.md"
PAPER = {"gain": ".0546 +/- .0006", "missforest": ".0608", "mice": ".0646"}  # Table 2, Breast, 20% MCAR
PAPER_OTHERS = "EM .0634, autoencoder .0697"
GAIN_PAPER_RMSE = 0.0546
IMPUTERS = {
    "gain": {},  # the reference defaults: batch 128, hint 0.9, alpha 100, 10,000 iterations
    "knn": {"n_neighbors": 5},
    "mice": {"max_iter": 10},
    # 100 trees, mtry = sqrt(p) as in missForest; 3 rounds instead of up to 10 to fit the time budget
    # (IterativeImputer's tolerance is never met by forests, so it would always run all 10)
    "missforest": {"max_iter": 3, "n_jobs": 2},
    "mean": {},
}


def reference_gain(data_x: np.ndarray, iterations: int, seed: int, batch_size: int = 128, hint_rate: float = 0.9,
                   alpha: float = 100.0) -> np.ndarray:
    """The reference ``gain()`` transliterated to torch autograd (timing baseline only)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    data_m = 1 - np.isnan(data_x)
    no, dim = data_x.shape
    lo = np.nanmin(data_x, 0)
    hi = np.nanmax(data_x - lo, 0)
    norm = np.nan_to_num((data_x - lo) / (hi + 1e-6), nan=0.0)

    def net() -> list[torch.Tensor]:
        shapes = [(2 * dim, dim), (dim,), (dim, dim), (dim,), (dim, dim), (dim,)]
        return [(torch.randn(s) * np.sqrt(2.0 / s[0]) if len(s) == 2 else torch.zeros(s)).requires_grad_()
                for s in shapes]

    def mlp(p: list[torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.cat([a, b], 1) @ p[0] + p[1])
        h = torch.relu(h @ p[2] + p[3])
        return torch.sigmoid(h @ p[4] + p[5])

    tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    gen, disc = net(), net()
    opt_d, opt_g = torch.optim.Adam(disc), torch.optim.Adam(gen)
    for _ in range(iterations):
        idx = rng.permutation(no)[:batch_size]
        m = tensor(data_m[idx])
        z = tensor(rng.uniform(0, 0.01, [len(idx), dim]))
        h = m * tensor(rng.uniform(0.0, 1.0, [len(idx), dim]) < hint_rate)
        x = m * tensor(norm[idx]) + (1 - m) * z
        d_prob = mlp(disc, x * m + mlp(gen, x, m).detach() * (1 - m), h)
        d_loss = -torch.mean(m * torch.log(d_prob + 1e-8) + (1 - m) * torch.log(1 - d_prob + 1e-8))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_sample = mlp(gen, x, m)
        d_prob = mlp(disc, x * m + g_sample * (1 - m), h)
        g_loss = -torch.mean((1 - m) * torch.log(d_prob + 1e-8)) \
            + alpha * torch.mean((m * x - m * g_sample) ** 2) / torch.mean(m)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    with torch.no_grad():
        m = tensor(data_m)
        x = m * tensor(norm) + (1 - m) * tensor(rng.uniform(0, 0.01, [no, dim]))
        imputed = mlp(gen, x, m).numpy()
    return (data_m * norm + (1 - data_m) * imputed) * (hi + 1e-6) + lo


def gain_speed(X: np.ndarray, iterations: int) -> str:
    """Time GAINImputer against the reference port on one 20% MCAR mask; a markdown paragraph."""
    masked = ampute(X, "MCAR", 0.2, random_state=123)
    hidden = np.isnan(masked)
    span = X.max(0) - X.min(0)
    rmse = lambda out: float(np.sqrt(np.mean(((out - X) / span)[hidden] ** 2)))  # noqa: E731
    torch.set_num_threads(1)
    t = time.perf_counter()
    ref = reference_gain(masked, iterations, seed=0)
    ref_s = time.perf_counter() - t
    t = time.perf_counter()
    ours = GAINImputer(iterations=iterations, random_state=0, n_threads=1).fit_transform(masked)
    ours_s = time.perf_counter() - t
    print(f"GAIN speed: reference port {ref_s:.1f} s, GAINImputer {ours_s:.1f} s")
    return (f"GAIN training speed, {iterations:,} iterations on one 20% MCAR mask, one torch CPU thread each:\n\n"
            "| implementation | seconds | speed vs reference | RMSE on this mask |\n|---|---:|---:|---:|\n"
            f"| reference loop ported to torch autograd + torch.optim.Adam | {ref_s:.1f} | 1.00x | {rmse(ref):.4f} |\n"
            f"| `GAINImputer` (hand-written backward, fused Adam, batched sampling) | {ours_s:.1f} | "
            f"{ref_s / ours_s:.2f}x | {rmse(ours):.4f} |\n")


def mechanism_table(result: EvaluationResult) -> str:
    rmse, secs, wd = result.table("rmse"), result.table("seconds"), result.table("wasserstein")
    paper = PAPER if result.mechanism == "MCAR" else {}
    lines = ["| imputer | RMSE mean +/- sd | paper (Table 2) | mean Wasserstein | s per imputation |",
             "|---|---:|---:|---:|---:|"]
    for name, row in rmse.iterrows():
        lines.append(f"| {name} | {row['mean']:.4f} +/- {row['sd']:.4f} | {paper.get(name, '-')} | "
                     f"{wd.loc[name, 'mean']:.4f} | {secs.loc[name, 'mean']:.1f} |")
    choice = select_imputer(result)
    return (f"### 20% {result.mechanism}, {result.repeats} repeat(s)\n\n" + "\n".join(lines)
            + f"\n\nChosen by `select_imputer`: {choice.reason}.\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 MCAR repeats, 1 MAR/MNAR repeat, short speed test")
    args = ap.parse_args()
    repeats = {"MCAR": 2, "MAR": 1, "MNAR": 1} if args.quick else {"MCAR": 10, "MAR": 5, "MNAR": 5}
    X = load_breast_cancer().data
    started = time.perf_counter()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    # one BLAS thread: OpenBLAS threads fighting torch's OpenMP threads on 2 cores slowed MICE ~10x
    with threadpool_limits(limits=1, user_api="blas"):
        speed = gain_speed(X, 1000 if args.quick else 2000)
        sections, results = [], {}
        for mechanism, n in repeats.items():
            t = time.perf_counter()
            results[mechanism] = evaluate_imputers(X, IMPUTERS, mechanism=mechanism, rate=0.2, repeats=n,
                                                   random_state=0)
            print(f"{mechanism}: {time.perf_counter() - t:.0f} s\n{results[mechanism].table()}")
            sections.append(mechanism_table(results[mechanism]))
    gain = results["MCAR"].table().loc["gain"]
    gap = gain["mean"] / GAIN_PAPER_RMSE - 1
    total = time.perf_counter() - started
    rerun = ".venv/bin/python benchmarks/bench_imputation.py" + (" --quick" if args.quick else "")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        f"## Imputation: GAIN vs baselines ({date.today()}, {platform.machine()}, 2 CPU cores, shared machine)\n\n"
        f"Rerun: `{rerun}` ({total / 60:.0f} min; torch {torch.__version__}, scikit-learn {sklearn.__version__})\n\n"
        "Data: scikit-learn `load_breast_cancer` (569 x 30, the GAIN paper's Breast set). Each repeat hides 20% "
        "of the cells with `ampute` (MAR: 20% of the cells of the ~70% non-driver columns; MNAR: self-masking "
        "on the value), imputes, and scores RMSE over the hidden cells after min-max scaling by the full data "
        "(the reference code's `rmse_loss`), plus the mean per-column Wasserstein distance between imputed and "
        "true hidden values. All imputers see the same masks. Settings: GAIN the reference defaults (batch 128, "
        "hint 0.9, alpha 100, 10,000 iterations); KNN k=5 (`FastKNNImputer`); MICE `IterativeImputer` + "
        "BayesianRidge, 10 rounds; MissForest `IterativeImputer` + random forests (100 trees, mtry sqrt(p)), "
        "3 rounds (in a development run on one mask, 3, 5 and 10 rounds gave RMSE .0651, .0652, .0650). "
        f"Paper's other Breast entries: {PAPER_OTHERS}.\n\n"
        + "\n".join(sections)
        + f"\nGoal: GAIN within 10% of the paper's .0546. Measured {gain['mean']:.4f} +/- {gain['sd']:.4f}, "
        f"{gap:+.0%}: goal {'met' if abs(gap) <= 0.10 else 'NOT met'}. "
        + ("" if select_imputer(results["MCAR"]).name == "gain" else "GAIN does not win here. ")
        + "Our GAIN follows the authors' current code (jsyoon0823/GAIN, 2020: alpha 100, 10,000 iterations, the "
        "whole data imputed in place); compare the RMSE of the line-by-line port of that code in the speed table. "
        "Their 2019 code scored held-out test rows after an 80/20 split with alpha 10 and 5,000 iterations, and "
        "the paper's exact protocol is not published as code; in development runs on two MCAR masks, alpha 10 "
        "(5,000 or 10,000 iterations) and alpha 1000 gave .069-.087, never near .0546."
        + "\n\n" + speed
    )
    print(OUT.read_text())


if __name__ == "__main__":
    main()
