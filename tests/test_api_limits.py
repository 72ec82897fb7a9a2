"""Per-tenant rate limit and daily quota (429 + Retry-After), body and upload size (413), request
timeout (504), CORS closed by default and allow-listed when configured, '*' refused."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from tests.api_support import auth, client, local_settings
from trialsynth.settings import Settings

POWER = {"endpoint": "continuous", "effect": 0.4}


def power(c, key: str, tenant: str = "acme", body=POWER):
    return c.post("/simulate/v1/power", json=body, headers=auth(c.app.state.ctx.settings, tenant) | {"Idempotency-Key": key})


def upload(c, key: str, tenant: str = "acme", data: bytes = b"STUDYID,USUBJID\nS,1\n", drop_id: str | None = None):
    form = {"study": "ST-1"} | ({"drop_id": drop_id} if drop_id else {})
    return c.post("/ingest/v1/drops", data=form, files=[("files", ("dm.csv", data, "text/csv"))],
                  headers=auth(c.app.state.ctx.settings, tenant) | {"Idempotency-Key": key})


def test_oversize_bodies_are_413_by_declared_length_and_by_streamed_length(tmp_path):
    with client(local_settings(tmp_path, max_body_bytes=2048)) as c:
        big = POWER | {"study": "S" * 10, "padding": "x" * 4000}
        r = power(c, "big", body=big)
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
        assert "2048 bytes" in r.json()["detail"]
        chunks = (b'{"endpoint": "continuous", "effect": 0.4, "x": "', b"y" * 3000, b'"}')
        r = c.post("/simulate/v1/power", content=iter(chunks),
                   headers=auth(c.app.state.ctx.settings) | {"Idempotency-Key": "chunked", "Content-Type": "application/json"})
        assert r.status_code == 413
        assert power(c, "small").status_code == 200  # a body within the limit passes


def test_uploads_have_their_own_size_limit(tmp_path):
    with client(local_settings(tmp_path, max_upload_bytes=4096, max_body_bytes=1024)) as c:
        assert upload(c, "u1").status_code == 201  # above the JSON limit is fine for an upload
        r = upload(c, "u2", data=b"x" * 10_000)
        assert r.status_code == 413 and "4096 bytes" in r.json()["detail"]


def test_rate_limit_is_per_tenant_with_retry_after(tmp_path):
    with client(local_settings(tmp_path, rate_per_s=0.5, rate_burst=2)) as c:
        s = c.app.state.ctx.settings
        assert [c.get("/jobs", headers=auth(s)).status_code for _ in range(2)] == [200, 200]
        r = c.get("/jobs", headers=auth(s))
        assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
        assert 1 <= int(r.headers["retry-after"]) <= 2
        assert c.get("/jobs", headers=auth(s, "globex")).status_code == 200  # another tenant has its own bucket


def test_quota_exhaustion_is_429_until_midnight_utc_and_failed_work_does_not_count(tmp_path):
    with client(local_settings(tmp_path, quota_per_day=2)) as c:
        # a simulation job while Dagster is unreachable: 503, and the quota is given back
        sim = power(c, "sim", body=POWER | {"simulations": 10})
        assert sim.status_code == 503
        assert upload(c, "q1", drop_id="d1").status_code == 201
        assert upload(c, "q2", drop_id="d2").status_code == 201
        r = upload(c, "q3", drop_id="d3")
        assert r.status_code == 429 and r.json()["type"] == "/problems/quota-exhausted"
        assert 0 < int(r.headers["retry-after"]) <= 86400
        assert not (c.app.state.ctx.settings.landing_dir / "acme" / "ST-1" / "d3").exists()
        assert upload(c, "q1", drop_id="d1").status_code == 201  # a replay costs nothing
        assert upload(c, "g1", tenant="globex").status_code == 201  # quotas are per tenant
        assert power(c, "analytic").status_code == 200  # analytic answers are not jobs: no quota


def test_slow_requests_time_out_with_504(tmp_path):
    with client(local_settings(tmp_path, request_timeout_s=0.2)) as c:
        c.app.add_api_route("/slow", lambda: time.sleep(1.0) or {"late": True})
        r = c.get("/slow")
        assert r.status_code == 504 and r.json()["type"] == "/problems/request-timeout"


def test_cors_is_closed_by_default(tmp_path):
    with client(local_settings(tmp_path)) as c:
        preflight = c.options("/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in preflight.headers
        r = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_allow_list(tmp_path):
    with client(local_settings(tmp_path, cors_origins=["https://app.example"])) as c:
        ok = c.options("/jobs", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options("/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in other.headers
    with pytest.raises(ValidationError, match="'\\*' is refused"):
        Settings(api={"cors_origins": ["*"]})
