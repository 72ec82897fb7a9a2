"""Reference DP synthesizers (smartnoise-synth) for bench_dp_synthesis.py; runs in .venv-dp only.

    .venv-dp/bin/python benchmarks/dp_reference.py --train train.parquet --out synthetic.parquet \
        --synthesizer mst --epsilon 0.9 --delta 5e-7 --bounds bounds.json --categorical ARM,SEX \
        --rows 400 --seed 7

Prints one JSON line: fit and sample seconds (wall and process CPU). ``--bounds`` (JSON: column ->
[lower, upper]) gives every continuous column's bounds, estimated with DP by the caller from its own
share of the budget (smartnoise's own bounds estimate, ``preprocessor_eps``, failed on the demo
table at 10% of epsilon = 1 spread over 20 columns); MST and AIM bin them into ``--bins`` bins.
Categorical columns arrive as strings; smartnoise reads their category sets from the data (our
synthesizers take them from the public domain instead).
"""

from __future__ import annotations

import argparse
import json
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--synthesizer", required=True, choices=["mst", "aim", "dpctgan"])
    parser.add_argument("--epsilon", type=float, required=True)
    parser.add_argument("--delta", type=float, default=1e-6)
    parser.add_argument("--bounds", required=True)
    parser.add_argument("--bins", type=int, default=16)
    parser.add_argument("--aim-rounds", type=int, default=None, help="AIM rounds (smartnoise default: 16 x columns)")
    parser.add_argument("--categorical", default="")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import torch
    from snsynth import Synthesizer
    from snsynth.transform import BinTransformer, MinMaxTransformer

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    train = pd.read_parquet(args.train)
    categorical = [c for c in args.categorical.split(",") if c]
    continuous = [c for c in train.columns if c not in categorical]
    bounds = json.loads(Path(args.bounds).read_text())
    if args.synthesizer == "dpctgan":
        constraints = {c: MinMaxTransformer(lower=lo, upper=hi, nullable=True) for c, (lo, hi) in bounds.items()}
    else:
        constraints = {c: BinTransformer(bins=args.bins, lower=lo, upper=hi, nullable=True) for c, (lo, hi) in bounds.items()}
    options = {"delta": args.delta}
    if args.synthesizer == "dpctgan":  # its default batch (500) exceeds trial tables: a quarter of the rows
        options.update(verbose=False, cuda=False, batch_size=2 * max(len(train) // 8, 5))
    if args.synthesizer == "aim" and args.aim_rounds:
        options.update(rounds=args.aim_rounds)
    model = Synthesizer.create(args.synthesizer, epsilon=args.epsilon, **options)
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(train, transformer=constraints, categorical_columns=categorical, continuous_columns=continuous,
                  nullable=True)
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall = time.perf_counter()
    synthetic = pd.DataFrame(model.sample(args.rows), columns=train.columns)
    sample_wall = time.perf_counter() - wall
    synthetic.to_parquet(args.out, index=False)
    print(json.dumps({"fit_seconds": fit_wall, "fit_cpu_seconds": fit_cpu, "sample_seconds": sample_wall}))


if __name__ == "__main__":
    main()
