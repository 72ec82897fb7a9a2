"""Privacy metrics: copies of training rows are caught, fresh draws from the same distribution pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from models.evidence.privacy import nearest_distances, privacy_metrics
from models.evidence.thresholds import DEFAULT_THRESHOLDS
from tests.test_synthesis_approval import lake  # noqa: F401 (fixture: a prepared lake of the demo study)

CATEGORICAL = ["SEX", "ARM"]
NUMERIC = ["AGE", "WEIGHT", "HEIGHT"]


def draw(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "AGE": rng.normal(50, 10, n),
            "WEIGHT": rng.normal(70, 8, n),
            "HEIGHT": rng.normal(170, 9, n),
            "SEX": rng.choice(["F", "M"], n),
            "ARM": rng.choice(["A", "B", "P"], n),
        }
    )


def levels(result) -> dict[str, str]:
    return {v.metric: DEFAULT_THRESHOLDS[v.metric].level(v.value) for v in result.metric_values()}


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return draw(600, 0)


@pytest.fixture(scope="module")
def holdout() -> pd.DataFrame:
    return draw(300, 1)


def test_nearest_distances_match_brute_force_in_chunks() -> None:
    rng = np.random.default_rng(0)
    reference, queries = rng.normal(size=(50, 4)), rng.normal(size=(23, 4))
    expected = np.sort(cdist(queries, reference), axis=1)[:, :3]
    np.testing.assert_allclose(nearest_distances(reference, queries, k=3, chunk_size=5), expected)


def test_copies_of_training_rows_are_exact_copies_and_fail_every_privacy_metric(train, holdout) -> None:
    result = privacy_metrics(train, train.sample(frac=1, random_state=0), holdout, CATEGORICAL, NUMERIC)
    assert result.exact_copy_share == 1.0
    assert result.holdout_exact_copy_share == 0.0
    assert result.dcr_share_below_holdout_p5 == 1.0
    assert result.dcr_median_ratio == 0.0 and result.nndr_median_ratio == 0.0
    assert result.mia_auc > 0.95
    assert set(levels(result).values()) == {"fail"}


def test_a_few_copies_raise_the_exact_copy_share_by_their_fraction(train, holdout) -> None:
    synthetic = pd.concat([draw(570, 2), train.iloc[:30]], ignore_index=True)  # 5 % copies
    assert privacy_metrics(train, synthetic, holdout, CATEGORICAL, NUMERIC).exact_copy_share == pytest.approx(
        0.05
    )


def test_independent_draws_from_the_same_distribution_pass(train, holdout) -> None:
    result = privacy_metrics(train, draw(600, 3), holdout, CATEGORICAL, NUMERIC)
    assert result.exact_copy_share == 0.0
    assert abs(result.dcr_share_below_holdout_p5 - 0.05) < 0.04
    assert result.dcr_median_ratio == pytest.approx(1.0, abs=0.15)
    assert result.mia_auc == pytest.approx(0.5, abs=0.07)
    assert set(levels(result).values()) == {"pass"}


def test_synthetic_rows_near_training_rows_are_flagged_without_being_copies(train, holdout) -> None:
    rng = np.random.default_rng(4)
    jittered = train.assign(AGE=train["AGE"] + rng.normal(0, 0.05, len(train)))  # 0.005 sd away
    result = privacy_metrics(train, jittered, holdout, CATEGORICAL, NUMERIC)
    assert result.exact_copy_share == 0.0
    assert levels(result)["dcr_share_below_holdout_p5"] == "fail"
    assert levels(result)["mia_auc"] == "fail"


def test_missing_values_and_subsampling_are_handled(train, holdout) -> None:
    with_gaps = train.assign(WEIGHT=train["WEIGHT"].where(train.index % 7 != 0))
    result = privacy_metrics(with_gaps, draw(600, 5), holdout, CATEGORICAL, NUMERIC, max_rows=200)
    assert len(result.dcr_synthetic) == len(result.dcr_train_to_synthetic) == 200
    assert np.isfinite(result.dcr_synthetic).all()
    summary = result.summary()
    assert summary["rows_synthetic"] == 200 and summary["dcr_holdout_p5"] <= summary["dcr_holdout_median"]


# --- the epsilon curve: what a privacy budget costs, in the evidence pack -------------------------


@pytest.fixture(scope="module")
def trial_split() -> tuple[pd.DataFrame, pd.DataFrame]:
    from tests.test_synth_dp_mechanisms import trial_table

    df = trial_table(300, seed=3)
    return df.iloc[:240].reset_index(drop=True), df.iloc[240:].reset_index(drop=True)


def test_the_curve_scores_each_point_as_the_pack_scores_that_cohort(trial_split) -> None:
    from models.evidence import build_evidence_pack
    from models.evidence.epsilon_curve import epsilon_curve
    from models.synth.dp import MSTSynthesizer
    from tests.test_synth_dp_mechanisms import COLUMNS

    train, holdout = trial_split
    curve = epsilon_curve(train, holdout, ["ARM", "SEX"], target="SEX", columns=COLUMNS, epsilons=(1, 100),
                          mechanisms=("mst",), random_state=5)
    assert [(p["mechanism"], p["epsilon"]) for p in curve["points"]] == [("mst", 1.0), ("mst", 100.0),
                                                                        ("copula (no DP)", None)]
    assert curve["domain"] == {"public": list(train.columns), "read_off_training_data": []}
    model = MSTSynthesizer(epsilon=1, columns=COLUMNS, random_state=5).fit(train)
    pack = build_evidence_pack(train, model.sample(len(train), random_state=5), holdout, ["ARM", "SEX"],
                               target="SEX", run_id="mst1", random_state=5, n_bootstrap=0, closest_k=0)
    table = pack.metrics_frame().set_index(["metric", "variable"])["value"]
    point = curve["points"][0]
    for metric in ("correlation_delta_mean", "detection_auc", "mia_auc"):
        assert point[metric] == pytest.approx(table[(metric, None)])
    assert point["utility_ratio"] == pytest.approx(table[("utility_ratio", "SEX")])
    strong = curve["points"][1]  # a budget this large barely perturbs the histograms
    assert strong["detection_auc"] < point["detection_auc"] and strong["wasserstein_mean"] < point["wasserstein_mean"]


def test_a_point_the_data_is_too_small_to_score_is_nan_not_a_crash(trial_split) -> None:
    from models.evidence.epsilon_curve import score_synthetic

    train, holdout = trial_split
    synthetic = train.copy()
    synthetic["ARM"] = ["C"] + ["A"] * (len(train) - 1)  # one row of a class: no stratified early-stopping split
    scores = score_synthetic(train, synthetic, holdout, ["ARM", "SEX"], target="ARM")
    assert np.isnan(scores["utility_ratio"]) and 0.5 <= scores["detection_auc"] <= 1


def test_columns_without_a_public_domain_get_a_stand_in_that_the_curve_names(trial_split) -> None:
    from models.evidence.epsilon_curve import standin_domain

    train, _ = trial_split
    domain, read_off = standin_domain(train, ["ARM", "SEX"], {"ARM": {"categories": ["A", "B", "C", "D"]}})
    assert read_off == ["SEX", "AGE", "SYSBP"]
    assert domain["ARM"] == {"categories": ["A", "B", "C", "D"]} and domain["SEX"]["categories"] == ["F", "M"]
    assert domain["AGE"]["kind"] == "integer" and domain["SYSBP"]["decimals"] == 1
    low, high = domain["SYSBP"]["min_value"], domain["SYSBP"]["max_value"]
    assert low <= train["SYSBP"].min() and high >= train["SYSBP"].max()  # rounded outward, never inward
    assert high - low < 1.1 * (train["SYSBP"].max() - train["SYSBP"].min()) + 1


def test_the_pack_carries_the_curve_in_json_summary_and_report_only_when_asked(trial_split, tmp_path) -> None:
    from models.evidence import build_evidence_pack
    from models.evidence.pack import EvidencePack
    from models.evidence.report import _epsilon_curve_html, render_html

    train, holdout = trial_split
    synthetic = train.sample(frac=1.0, random_state=0).reset_index(drop=True)
    options = {"epsilons": (0.5, 10), "mechanisms": ("dp_copula",), "columns": {"ARM": {"categories": ["A", "B", "C"]}}}
    pack = build_evidence_pack(train, synthetic, holdout, ["ARM", "SEX"], target="SEX", run_id="curve",
                               n_bootstrap=0, closest_k=0, epsilon_curve=options)
    curve = pack.details["epsilon_curve"]
    assert curve["target"] == "SEX" and curve["epsilons"] == [0.5, 10.0] and len(curve["points"]) == 3
    assert curve["domain"]["read_off_training_data"] == ["SEX", "AGE", "SYSBP"]
    assert "not differentially private" in curve["statement"]
    assert "epsilon curve (epsilon=0.5, epsilon=10, none (copula (no DP))):" in pack.summary_text()
    html = render_html(pack)
    heading = "Privacy budget against fidelity, utility and MIA AUC (epsilon curve)</h2>"
    section = html.split(heading)[1].split("<h2>")[0]
    assert section.count("data:image/png") == 1 and "<td>mia_auc</td><td>dp_copula</td>" in section
    assert "read off the training rows" in section and "SEX, AGE, SYSBP" in section
    again = EvidencePack.from_json(pack.to_json(tmp_path / "evidence.json")).details["epsilon_curve"]
    assert [p["mechanism"] for p in again["points"]] == ["dp_copula", "dp_copula", "copula (no DP)"]
    bad = build_evidence_pack(train, synthetic, holdout, ["ARM", "SEX"], run_id="bad", n_bootstrap=0, closest_k=0,
                              epsilon_curve={"mechanisms": ("copula",)})  # the pack stands, the curve is a warning
    assert "epsilon_curve" not in bad.details
    assert any(w.startswith("epsilon curve not computed: mechanisms must name DP synthesizers")
               for w in bad.details["warnings"])
    assert "Not computed" in _epsilon_curve_html(bad.details.get("epsilon_curve"))


def test_the_demo_and_pilot_configs_ask_for_the_curve_and_the_default_does_not() -> None:
    from pathlib import Path

    from trialsynth.study_config import StudyConfig, load_study_config

    studies = Path(__file__).resolve().parents[1] / "data" / "studies"
    assert StudyConfig().evidence.epsilon_curve is False
    for study in ("ACME-001", "CDISCPILOT01"):
        assert load_study_config(studies, study)[0].evidence.epsilon_curve is True


CURVE_YAML = """
seed: 3
synthesis: {synthesizer: copula, n: 80, allow_unapproved: true}
evidence: {closest_k: 0, epsilon_curve: true}
"""


@pytest.mark.slow  # the assets on a 120-subject lake plus 11 curve fits and scorings: about a minute
def test_the_evidence_pack_asset_adds_the_curve_when_the_study_config_asks(lake) -> None:  # noqa: F811
    import dagster as dg

    from assets.synthesis import evidence_pack, synthesizer_model, synthetic_cohort
    from orchestration.resources import LakeResource, LineageResource, RegistryResource
    from tests.test_synthesis_approval import PARTITION

    _settings, instance, configure = lake
    configure(CURVE_YAML)
    result = dg.materialize([synthesizer_model, synthetic_cohort, evidence_pack], partition_key=PARTITION,
                            instance=instance, resources={"lake": LakeResource(), "lineage": LineageResource(),
                                                          "registry": RegistryResource()})
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("evidence_pack")]
    summary = event.step_materialization_data.materialization.metadata["summary"].value
    assert "epsilon curve (epsilon=0.5, epsilon=1, epsilon=2, epsilon=5, epsilon=10, none (copula (no DP))):" in summary
    assert "detection_auc mst:" in summary and "mia_auc dp_copula:" in summary
