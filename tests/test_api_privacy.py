"""POST /synth/v1/train with a differential-privacy budget: validated with problems naming the field, and
refused (409) before any run is launched when it would exceed the study's cap, naming the spent and the
remaining budget. Dagster is unreachable here: a request that passes every check answers 503."""

from __future__ import annotations

import pytest

from tests.api_support import auth, client, local_settings
from trialsynth.registry import PrivacySpend

STUDY_YAML = """seed: 7
synthesis:
  synthesizer: mst
  privacy: {epsilon: 1.0, delta: 1.0e-6, cap: {epsilon: 2.0, delta: 1.0e-5}}
"""
DATA_SHA = "ab" * 32


@pytest.fixture
def api(tmp_path):
    settings = local_settings(tmp_path)
    settings.studies_path.mkdir(parents=True)
    (settings.studies_path / "DP-1.yaml").write_text(STUDY_YAML)
    for tenant in ("acme", "globex"):
        for study in ("DP-1", "PLAIN-1"):
            (settings.study_dir(tenant, study) / "bronze").mkdir(parents=True)
    with client(settings) as c:
        yield c


def train(c, key: str, tenant: str = "acme", **body):
    return c.post("/synth/v1/train", json={"study": "DP-1", **body},
                  headers=auth(c.app.state.ctx.settings, tenant) | {"Idempotency-Key": key})


def spend(c, tenant: str, epsilon: float, seed: int = 7, synthesizer: str = "mst") -> str:
    """A DP model of ``tenant``'s DP-1 registered with its spend, as the training asset registers it."""
    artifact = c.app.state.ctx.settings.lake_dir / f"{tenant}-{epsilon}-{seed}.pkl"
    artifact.write_bytes(b"model")
    privacy = {"epsilon": epsilon, "delta": 1e-6, "cap": {"epsilon": 2.0, "delta": 1e-5}, "estimate_domain": False}
    return c.app.state.ctx.registry.register(
        kind="synthesizer", name=f"{tenant}/DP-1/{synthesizer}", trained_by="dagster run r", seed=seed,
        training_data_sha256=DATA_SHA, artifact_path=artifact, parameters={"privacy": privacy},
        privacy=PrivacySpend(study=f"{tenant}/DP-1", mechanism=synthesizer, epsilon=epsilon, delta=1e-6,
                             cap_epsilon=2.0, cap_delta=1e-5))


def field(response) -> str:
    return response.json()["errors"][0]["field"]


@pytest.mark.parametrize(("body", "expected"), [
    ({"study": "PLAIN-1", "synthesizer": "copula", "privacy": {"epsilon": 1.0}}, "body.privacy"),
    ({"study": "PLAIN-1", "privacy": {"epsilon": 1.0}}, "body.privacy"),  # the study's ctgan has no guarantee
    ({"study": "PLAIN-1", "synthesizer": "dp_copula"}, "body.synthesizer"),  # DP without a budget
    ({"privacy": {"epsilon": 0}}, "body.privacy.epsilon"),
    ({"privacy": {"epsilon": 1.0, "delta": 0.5}}, "body.privacy.delta"),
    ({"privacy": {"epsilon": True}}, "body.privacy.epsilon"),
    ({"privacy": {"epsilon": 1.0, "cap": {"epsilon": 9}}}, "body.privacy.cap"),  # the cap is the study config's
])
def test_bad_privacy_requests_are_422_naming_the_field(api, body, expected):
    r = train(api, f"bad-{expected}-{sorted(body)}-{body.get('privacy')}", **body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json" and field(r) == expected
    assert api.app.state.ctx.registry.list() == []


def test_a_budget_over_the_cap_is_refused_naming_cap_spent_and_remaining(api):
    r = train(api, "too-much", privacy={"epsilon": 3.0})
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["type"] == "/problems/privacy-budget-exceeded" and field(r) == "body.privacy.epsilon"
    assert problem["cap"] == {"epsilon": 2.0, "delta": 1e-5}
    assert problem["spent"] == {"epsilon": 0.0, "delta": 0.0, "models": 0} and problem["remaining"]["epsilon"] == 2.0


def test_what_the_study_spent_counts_and_only_the_same_tenants_study(api):
    spend(api, "acme", 1.5)
    r = train(api, "after-spend", privacy={"epsilon": 1.0})
    assert r.status_code == 409, r.text
    assert r.json()["spent"] == {"epsilon": 1.5, "delta": 1e-6, "models": 1}
    assert r.json()["remaining"] == {"epsilon": 0.5, "delta": pytest.approx(9e-6)}
    assert "spent epsilon=1.5" in r.json()["detail"] and "remaining epsilon=0.5" in r.json()["detail"]
    # another seed is another split of the same subjects: the same account
    assert train(api, "other-seed", privacy={"epsilon": 1.0}, seed=8).status_code == 409
    # within what is left: accepted (then 503: no Dagster here); the idempotency key stays retryable
    assert train(api, "fits", privacy={"epsilon": 0.5}).status_code == 503
    # the same training as the registered model is a reuse, which spends nothing
    assert train(api, "reuse", privacy={"epsilon": 1.5}).status_code == 503
    # another tenant's study of the same name has its own account
    assert train(api, "other", tenant="globex", privacy={"epsilon": 1.0}).status_code == 503


def test_the_study_configs_budget_applies_when_the_request_has_none(api):
    spend(api, "acme", 1.5, synthesizer="dp_copula")
    r = train(api, "default-budget", synthesizer="mst")  # the study's epsilon 1.0 > the remaining 0.5
    assert r.status_code == 409 and r.json()["remaining"]["epsilon"] == 0.5
