"""The study config's privacy budget: DP synthesizers need one, others refuse one, the cap is checked,
a run may set its own budget but never the study's cap; "none" labels a study without a guarantee."""

from __future__ import annotations

import pytest

from assets.synthesis import SynthesisRunConfig
from trialsynth.study_config import StudyConfig, load_study_config


def synthesis(**values) -> StudyConfig:
    return StudyConfig.model_validate({"synthesis": values})


def test_privacy_budget_and_cap() -> None:
    cfg = synthesis(synthesizer="mst", privacy={"epsilon": 1, "cap": {"epsilon": 3, "delta": 1e-5}},
                    columns={"AGE": {"kind": "integer", "min_value": 18, "max_value": 90}})
    assert cfg.synthesis.privacy_label == "(epsilon=1, delta=1e-06)-DP"
    assert (cfg.synthesis.privacy.cap_budget.epsilon, cfg.synthesis.privacy.cap_budget.delta) == (3, 1e-5)
    single = synthesis(synthesizer="dp_copula", privacy={"epsilon": 2, "delta": 1e-7}).synthesis.privacy.cap_budget
    assert (single.epsilon, single.delta) == (2, 1e-7)  # no cap given: one training's budget
    assert synthesis(synthesizer="copula").synthesis.privacy_label == "none"


@pytest.mark.parametrize(("values", "message"), [
    ({"synthesizer": "copula", "privacy": {"epsilon": 1}}, "copula gives no differential-privacy guarantee"),
    ({"synthesizer": "mst"}, "mst needs privacy"),
    ({"synthesizer": "mst", "privacy": {"epsilon": 2, "cap": {"epsilon": 1}}}, "is below the budget of one training"),
    ({"synthesizer": "mst", "privacy": {"epsilon": 0}}, "greater than 0"),
    ({"synthesizer": "mst", "privacy": {"epsilon": 1, "delta": 0.5}}, "less than or equal to 0.001"),
    ({"synthesizer": "mst", "privacy": {"epsilon": 1}, "columns": {"AGE": {"bounds": [1, 2]}}}, "Extra inputs"),
])
def test_bad_privacy_configs_name_the_problem(tmp_path, values: dict, message: str) -> None:
    import yaml

    (tmp_path / "S1.yaml").write_text(yaml.safe_dump({"synthesis": values}))
    with pytest.raises(ValueError, match=message):
        load_study_config(tmp_path, "S1")


def test_a_run_sets_its_budget_but_not_the_cap() -> None:
    study = synthesis(synthesizer="mst", privacy={"epsilon": 1, "cap": {"epsilon": 3, "delta": 1e-5}})
    run = SynthesisRunConfig(privacy={"epsilon": 0.5}).apply(study).synthesis.privacy
    assert (run.epsilon, run.delta, run.cap_budget.epsilon) == (0.5, 1e-6, 3)
    with pytest.raises(ValueError, match=r"a run sets only epsilon and delta, not \['cap'\]"):
        SynthesisRunConfig(privacy={"cap": 9}).apply(study)
    with pytest.raises(ValueError, match="needs privacy"):
        SynthesisRunConfig(synthesizer="dp_copula").apply(synthesis(synthesizer="copula"))
