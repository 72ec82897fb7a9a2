"""``trialsynth power``: N per arm printed, PNG written, bad input reported with the parameter."""

from __future__ import annotations

import pytest

from trialsynth.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            "--endpoint continuous --effect 0.5 --alpha 0.05 --power 0.8 --ratio 1 --dropout 0.15",
            ["N per arm: control 64, treatment 64; total 128", "control 76, treatment 76; total 152"],
        ),
        (
            "--endpoint binary --p-control 0.5 --effect 0.15 --method arcsine",
            ["N per arm: control 170, treatment 170"],
        ),
        ("--endpoint tte --effect 0.7 --ratio 2", ["events required: 278"]),
        ("--endpoint tte --hr 0.7 --power 0.9", ["events required: 331"]),
    ],
    ids=["continuous", "binary", "tte-2to1", "tte-90"],
)
def test_power_prints_n_and_writes_png(tmp_path, capsys, args, expected):
    out = tmp_path / "curve.png"
    assert main(["power", *args.split(), "--simulations", "100", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in expected:
        assert text in printed
    assert "simulated power at enrolment" in printed
    assert out.read_bytes()[:8] == PNG


def test_power_default_png_goes_to_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "power",
                "--endpoint",
                "binary",
                "--p-control",
                "0.3",
                "--p-treatment",
                "0.5",
                "--simulations",
                "0",
            ]
        )
        == 0
    )
    assert (tmp_path / "power_binary.png").read_bytes()[:8] == PNG
    assert "simulated" not in capsys.readouterr().out


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
    assert main(["power", *args.split(), "--out", str(tmp_path / "x.png")]) == 2
    assert param in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
