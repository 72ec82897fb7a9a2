#!/usr/bin/env bash
# The reference differentially private synthesizers (smartnoise-synth: MST, AIM, DP-CTGAN) in their
# own virtualenv (.venv-dp), for benchmarks/bench_dp_synthesis.py only. smartnoise-synth 1.0.8 pins
# pandas 2.3 and opacus 0.14 (and pulls jax for its private-pgm backend), which would fight the
# product venv's pandas 3. torch first and exactly 2.13.0, the local CPU wheel (any other spec pulls
# GBs of CUDA packages). pyarrow reads the benchmark's Parquet hand-over files; packaging is
# imported by smartnoise's DP-CTGAN but not declared by it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-dp
PY=${PYTHON:-python3}
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q "smartnoise-synth==1.0.8" pyarrow packaging
touch "$VENV/.installed"
echo "installed smartnoise-synth into $VENV"
