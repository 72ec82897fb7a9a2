"""Small studies: a default CTGAN below the size where it is known to fail becomes the copula, with why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assets.synthesis import SynthesisRunConfig, _synthesizer_for_size
from models.evidence.thresholds import DEFAULT_THRESHOLDS
from models.synth.choice import GAN_MIN_ROWS, choose_synthesizer
from trialsynth.study_config import StudyConfig

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "gan_size.md"


def test_a_default_gan_on_a_trial_sized_table_becomes_the_copula_with_the_measured_reason() -> None:
    choice = choose_synthesizer("ctgan", 400, explicit=False)
    assert choice.name == "copula"
    assert "400 training rows" in choice.reason and "gan_size.md" in choice.reason and "AUC" in choice.reason
    assert choose_synthesizer("ctgan", GAN_MIN_ROWS, explicit=False).name == "ctgan"


def test_an_explicit_choice_stands_with_a_warning_and_other_synthesizers_are_untouched() -> None:
    gan = choose_synthesizer("ctgan", 400, explicit=True)
    assert gan.name == "ctgan" and "expect the evidence to fail" in gan.reason
    assert choose_synthesizer("dp_copula", 50, explicit=True).name == "dp_copula"
    assert choose_synthesizer("copula", 50_000, explicit=False).name == "copula"
    with pytest.raises(ValueError, match="n_rows"):
        choose_synthesizer("ctgan", 0, explicit=False)


@pytest.mark.parametrize(
    ("study", "run", "expected"),
    [({}, {}, "copula"), ({"synthesis": {"synthesizer": "ctgan"}}, {}, "ctgan"),
     ({"synthesis": {"params": {"epochs": 10}}}, {}, "ctgan"), ({}, {"synthesizer": "ctgan"}, "ctgan")],
    ids=["defaults", "study-names-ctgan", "study-sets-gan-params", "run-names-ctgan"],
)
def test_the_asset_applies_the_rule_only_to_the_default(study: dict, run: dict, expected: str) -> None:
    study_cfg = StudyConfig.model_validate(study)
    config = SynthesisRunConfig(**run)
    cfg, choice = _synthesizer_for_size(config.apply(study_cfg), study_cfg, config, 300)
    assert cfg.synthesis.synthesizer == choice.name == expected
    if expected == "copula":
        assert cfg.synthesis.params == {}  # GAN parameters do not reach the copula


def test_the_threshold_is_backed_by_the_measurement() -> None:
    """Every size at which CTGAN at its defaults was detected (above the warn cut-off) is below GAN_MIN_ROWS."""
    rows = re.findall(r"^\| \d+ \| (\d+) \| CTGAN defaults \| [\d.]+ \| ([\d.]+) \|", RESULTS.read_text(), re.M)
    assert rows, f"no CTGAN rows in {RESULTS}"
    failing = [int(n) for n, auc in rows if float(auc) > DEFAULT_THRESHOLDS["detection_auc"].warn]
    assert failing and max(failing) < GAN_MIN_ROWS
