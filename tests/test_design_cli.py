"""``trialsynth power``: both N per arm labelled, every assumption printed, no file unless asked, fast."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from models.design.analytic import ANALYSABLE_LABEL, ENROL_LABEL
from models.design.scenarios import RECOMMENDATION_LABELS, labelled_recommendations
from trialsynth.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            "--endpoint continuous --effect 0.5 --alpha 0.05 --power 0.8 --ratio 1 --dropout 0.15",
            [f"{ANALYSABLE_LABEL}: control 64, treatment 64 (total 128)",
             f"{ENROL_LABEL}: control 76, treatment 76 (total 152)"],
        ),
        (
            "--endpoint binary --p-control 0.5 --effect 0.15 --method arcsine",
            [f"{ANALYSABLE_LABEL}: control 170, treatment 170"],
        ),
        ("--endpoint tte --effect 0.7 --ratio 2", ["events required: 278"]),
        ("--endpoint tte --hr 0.7 --power 0.9", ["events required: 331"]),
    ],
    ids=["continuous", "binary", "tte-2to1", "tte-90"],
)
def test_power_prints_both_n_per_arm_and_a_simulation(tmp_path, monkeypatch, capsys, args, expected):
    monkeypatch.chdir(tmp_path)
    assert main(["power", *args.split(), "--simulations", "200"]) == 0
    printed = capsys.readouterr().out
    for text in expected:
        assert text in printed
    assert "simulated power with the N to enrol" in printed
    assert list(tmp_path.iterdir()) == []  # nothing written without --plot


def test_time_to_event_prints_every_assumption_beside_n_and_flags_defaults(capsys):
    assert main(["power", "--endpoint", "tte", "--hr", "0.75", "--accrual", "18", "--dropout", "0.1",
                 "--simulations", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    text = "\n".join(lines)
    assert "control median 12 time units (default)" in text
    assert "accrual 18, uniform entry" in text and "accrual 18 (default)" not in text
    assert "follow-up 12 (default) after the last subject enters: analysis at 30" in text
    assert "dropout 0.1: enrol analysable / (1 - 0.1)" in text and "exponential loss to follow-up" in text
    assert "P(event by the analysis): control" in text
    n_line = next(i for i, line in enumerate(lines) if line.startswith(ANALYSABLE_LABEL))
    assert lines[n_line + 1].startswith(ENROL_LABEL)
    assert lines.index("assumptions:") < n_line


def test_plot_only_where_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "figs" / "curve.png"
    assert main(["power", "--endpoint", "binary", "--p-control", "0.3", "--p-treatment", "0.5",
                 "--simulations", "50", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["curve.png"]
    assert f"power curve: {out}" in capsys.readouterr().out


def test_an_analytic_call_loads_neither_scipy_stats_pandas_nor_matplotlib():
    """What kept a call over a second: scipy.stats (~0.5 s), pandas and matplotlib imports, a plot."""
    code = ("import resource, sys; from trialsynth.cli import main; main(['power', '--endpoint', 'tte', '--hr', "
            "'0.7']); print(sorted(m for m in ('scipy.stats', 'pandas', 'matplotlib') if m in sys.modules)); "
            "u = resource.getrusage(resource.RUSAGE_SELF); print(u.ru_utime + u.ru_stime)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded, cpu = out.splitlines()[-2:]
    assert loaded == "[]"
    assert float(cpu) < 1.0  # CPU seconds with the default simulations (0.45 s measured on a busy machine)


def test_dagster_metadata_labels_n_per_arm_as_the_cli_does():
    rec = pd.DataFrame([{col: 1 for col in RECOMMENDATION_LABELS}])
    labelled = labelled_recommendations(rec)
    assert f"{ANALYSABLE_LABEL}, control" in labelled.columns and f"{ENROL_LABEL}, control" in labelled.columns
    assert not any(c.startswith("N per arm") or c == "n_per_arm_control" for c in labelled.columns)


@pytest.mark.parametrize(
    ("args", "param"),
    [
        ("--endpoint continuous --effect 0.5 --alpha 1.2", "alpha"),
        ("--endpoint continuous --effect 0.5 --power 1", "power"),
        ("--endpoint continuous --effect 0.5 --dropout 1", "dropout"),
        ("--endpoint continuous --effect 0.5 --sd -1", "sd"),
        ("--endpoint continuous --effect 0.5 --ratio 0", "ratio"),
        ("--endpoint continuous", "--effect"),
        ("--endpoint binary --p-control 1.5 --p-treatment 0.5", "p_control"),
        ("--endpoint binary --p-control 0.5 --effect 0.6", "p_treatment"),
        ("--endpoint binary --p-treatment 0.5", "--p-control"),
        ("--endpoint tte --hr 1", "hr"),
        ("--endpoint tte --effect -0.5", "hr"),
        ("--endpoint tte --hr 0.7 --effect 0.7", "not both"),
    ],
)
def test_power_bad_input_exits_2_naming_the_parameter(tmp_path, capsys, args, param):
    assert main(["power", *args.split(), "--plot", str(tmp_path / "x.png")]) == 2
    assert param in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
