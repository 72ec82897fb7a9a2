"""Bearer tokens: missing, malformed, expired, wrong audience or issuer, another algorithm, no tenant
claim; RS256 with a JWKS file; HS256 refused outside the embedded default; tenant scoping of models
and evidence (another tenant's id answers 404); the approve scope."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.api_support import auth, client, local_settings
from trialsynth.api.auth import TokenVerifier, hs256_secret, jwks_document
from trialsynth.api.problems import ProblemError
from trialsynth.registry import ModelRegistry
from trialsynth.security import KeyService
from trialsynth.settings import Settings


@pytest.fixture
def api(tmp_path):
    with client(local_settings(tmp_path)) as c:
        yield c


def claims(settings, **over) -> dict:
    now = int(time.time())
    return {"sub": "alice", "tenant": "acme", "aud": settings.api.audience, "iss": settings.api.issuer,
            "iat": now, "exp": now + 600} | over


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("case,expected", [
    ("missing", "Authorization: Bearer"),
    ("garbage", "not valid"),
    ("expired", "expired"),
    ("audience", "audience"),
    ("issuer", "issuer"),
    ("no_tenant", "'tenant'"),
    ("bad_tenant", "tenant claim"),
    ("alg_none", "algorithm"),
    ("wrong_secret", "not valid"),
])
def test_bad_tokens_are_401_problems_saying_why(api, case, expected):
    s = api.app.state.ctx.settings
    secret = hs256_secret(s)
    tokens = {
        "garbage": "not-a-jwt",
        "expired": jwt.encode(claims(s, exp=int(time.time()) - 120), secret, algorithm="HS256"),
        "audience": jwt.encode(claims(s, aud="another-api"), secret, algorithm="HS256"),
        "issuer": jwt.encode(claims(s, iss="someone-else"), secret, algorithm="HS256"),
        "no_tenant": jwt.encode({k: v for k, v in claims(s).items() if k != "tenant"}, secret, algorithm="HS256"),
        "bad_tenant": jwt.encode(claims(s, tenant="../etc"), secret, algorithm="HS256"),
        "alg_none": jwt.encode(claims(s), None, algorithm="none"),
        "wrong_secret": jwt.encode(claims(s), "x" * 40, algorithm="HS256"),
    }
    headers = {} if case == "missing" else bearer(tokens[case])
    r = api.get("/jobs", headers=headers)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer error=\"invalid_token\"")
    assert expected in r.json()["detail"]


def test_a_valid_token_reaches_the_route(api):
    assert api.get("/jobs", headers=auth(api.app.state.ctx.settings)).status_code == 200


def test_rs256_tokens_verify_against_the_jwks_file_by_kid(tmp_path):
    keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k1", "k2")}
    jwks = tmp_path / "jwks.json"
    jwks.write_text(jwks_document({kid: k.public_key() for kid, k in keys.items()}))
    settings = local_settings(tmp_path, jwt_algorithm="RS256", jwks_path=jwks)
    verifier = TokenVerifier(settings)
    good = jwt.encode(claims(settings), keys["k2"], algorithm="RS256", headers={"kid": "k2"})
    assert verifier.verify(f"Bearer {good}").tenant == "acme"
    forged = jwt.encode(claims(settings), keys["k1"], algorithm="RS256", headers={"kid": "k2"})
    unknown = jwt.encode(claims(settings), keys["k1"], algorithm="RS256", headers={"kid": "k9"})
    hs = jwt.encode(claims(settings), "y" * 40, algorithm="HS256")  # an HS256 token is refused under RS256
    for token in (forged, unknown, hs):
        with pytest.raises(ProblemError) as exc:
            verifier.verify(f"Bearer {token}")
        assert exc.value.status == 401
    with pytest.raises(ValueError, match="jwks_path"):
        Settings(api={"jwt_algorithm": "RS256"})


def test_hs256_is_only_for_the_embedded_default(tmp_path):
    stack = Settings(data_dir=tmp_path / "data", dagster_storage="postgres")
    with pytest.raises(ValueError, match="only allowed for the embedded default"):
        TokenVerifier(stack)


def _model(settings, tenant: str) -> str:
    artifact = settings.lake_dir / tenant / "m.pkl"
    artifact.parent.mkdir(parents=True, exist_ok=True)
    artifact.write_bytes(b"model")
    return ModelRegistry(settings.registry_sqlalchemy_url, keys=KeyService(settings)).register(
        kind="synthesizer", name=f"{tenant}/ST-1/copula", trained_by="test", training_data_sha256="0" * 64,
        artifact_path=artifact)


def test_another_tenants_model_and_evidence_answer_404(api):
    s = api.app.state.ctx.settings
    model_id = _model(s, "globex")
    pack = s.lake_dir / "globex" / "ST-1" / "evidence" / "run-1"
    pack.mkdir(parents=True)
    (pack / "evidence.json").write_text(json.dumps({"run_id": "run-1"}))
    (pack / "report.html").write_text("<html></html>")
    assert api.get(f"/synth/v1/models/{model_id}", headers=auth(s, "globex")).status_code == 200
    assert api.get(f"/synth/v1/models/{model_id}", headers=auth(s, "acme")).status_code == 404
    assert api.get("/evidence/v1/runs/run-1", headers=auth(s, "globex")).json() == {"run_id": "run-1"}
    html = api.get("/evidence/v1/runs/run-1?format=html", headers=auth(s, "globex"))
    assert html.headers["content-type"].startswith("text/html")
    for path in ("/evidence/v1/runs/run-1", "/evidence/v1/runs/run-1?format=html"):
        assert api.get(path, headers=auth(s, "acme")).status_code == 404
    gen = api.post("/synth/v1/generate", json={"model_id": model_id, "n": 10},
                   headers=auth(s, "acme") | {"Idempotency-Key": "g"})
    assert gen.status_code == 404


def test_approving_needs_the_scope_and_records_the_subject(api):
    s = api.app.state.ctx.settings
    model_id = _model(s, "acme")
    body = {"why": "evidence reviewed"}
    r = api.post(f"/synth/v1/models/{model_id}/approve", json=body, headers=auth(s) | {"Idempotency-Key": "a1"})
    assert r.status_code == 403 and "synth:approve" in r.json()["detail"]
    headers = auth(s, subject="qa-lead", scopes=("synth:approve",)) | {"Idempotency-Key": "a2"}
    r = api.post(f"/synth/v1/models/{model_id}/approve", json=body, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "approved"
    history = ModelRegistry(s.registry_sqlalchemy_url).history(model_id)
    assert (history[-1].to_status, history[-1].changed_by, history[-1].why) == ("approved", "qa-lead", "evidence reviewed")
    # approving twice is a conflict (a new key: the same key would replay the 200)
    headers["Idempotency-Key"] = "a3"
    assert api.post(f"/synth/v1/models/{model_id}/approve", json=body, headers=headers).status_code == 409
