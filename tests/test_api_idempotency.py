"""Idempotency-Key, case by case (IETF httpapi draft): missing -> 400, same key and payload -> the
original response (also after a restart), same key and another payload -> 422, still in flight -> 409,
per tenant, expiry, and a failure that leaves the key retryable. Uses the synchronous analytic power
(no Dagster needed); the job cases with Dagster are in test_api_jobs.py."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from tests.api_support import auth, client, local_settings
from trialsynth.api.idempotency import IdempotencyStore, fingerprint
from trialsynth.api.power import PowerRequest
from trialsynth.api.store import idempotency_table, open_store

POWER = {"endpoint": "binary", "p_control": 0.3, "p_treatment": 0.45, "dropout": 0.1}


def post(c, key: str | None, body=POWER, tenant: str = "acme"):
    headers = auth(c.app.state.ctx.settings, tenant) | ({"Idempotency-Key": key} if key is not None else {})
    return c.post("/simulate/v1/power", json=body, headers=headers)


def test_missing_key_is_a_400_problem_naming_the_header(tmp_path):
    with client(local_settings(tmp_path)) as c:
        r = post(c, None)
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["field"] == "header.Idempotency-Key"
        # even when the body is wrong too: the missing key is what the client must fix first
        assert post(c, None, {"endpoint": "nope"}).status_code == 400
        assert post(c, "").status_code in (400, 422)


def test_same_key_same_payload_replays_the_original_response_across_restarts(tmp_path):
    settings = local_settings(tmp_path)
    with client(settings) as c:
        first = post(c, "k-1")
        assert first.status_code == 200 and "idempotent-replayed" not in first.headers
        reordered = dict(reversed(list(POWER.items())))  # key order is not part of the payload
        again = post(c, "k-1", reordered)
        assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    with client(settings) as c:  # a new process on the same store
        after_restart = post(c, "k-1")
        assert after_restart.status_code == 200 and after_restart.content == first.content
        assert after_restart.headers["idempotent-replayed"] == "true"


def test_same_key_other_payload_is_422_naming_the_header(tmp_path):
    with client(local_settings(tmp_path)) as c:
        assert post(c, "k-2").status_code == 200
        r = post(c, "k-2", POWER | {"alpha": 0.01})
        assert r.status_code == 422 and r.json()["type"] == "/problems/idempotency-key-reused"
        assert r.json()["errors"][0]["field"] == "header.Idempotency-Key"


def test_a_retry_while_the_first_request_is_in_flight_is_409(tmp_path):
    with client(local_settings(tmp_path)) as c:
        store: IdempotencyStore = c.app.state.ctx.idempotency
        payload = PowerRequest.model_validate(POWER).model_dump(mode="json")  # defaults included, as the route does
        store.claim("acme", "k-3", fingerprint("POST", "/simulate/v1/power", payload))  # the first, not finished
        r = post(c, "k-3")
        assert r.status_code == 409 and r.headers["retry-after"] == "1"
        assert r.json()["type"] == "/problems/idempotency-key-in-flight"


def test_keys_are_per_tenant_and_expire(tmp_path):
    settings = local_settings(tmp_path)
    with client(settings) as c:
        assert post(c, "k-4").status_code == 200
        other = post(c, "k-4", POWER | {"alpha": 0.01}, tenant="globex")  # another tenant, same key: unrelated
        assert other.status_code == 200 and "idempotent-replayed" not in other.headers
        engine = c.app.state.ctx.engine
        with engine.begin() as conn:
            expires = conn.execute(select(idempotency_table.c.expires_at)
                                   .where(idempotency_table.c.key == "k-4", idempotency_table.c.tenant == "acme")).scalar()
            created = conn.execute(select(idempotency_table.c.created_at)
                                   .where(idempotency_table.c.key == "k-4", idempotency_table.c.tenant == "acme")).scalar()
            assert expires - created == timedelta(hours=24)
            conn.execute(update(idempotency_table).where(idempotency_table.c.key == "k-4", idempotency_table.c.tenant == "acme")
                         .values(expires_at=created - timedelta(seconds=1)))
        assert c.app.state.ctx.idempotency.purge_expired() == 1  # what a restart does with expired keys
        reused = post(c, "k-4", POWER | {"alpha": 0.02})  # expired: the key is free for a new request
        assert reused.status_code == 200 and "idempotent-replayed" not in reused.headers


def test_a_request_that_fails_on_the_server_leaves_its_key_retryable_with_the_same_resource_id(tmp_path):
    settings = local_settings(tmp_path)
    store = IdempotencyStore(open_store(settings))
    fp = fingerprint("POST", "/x", {"a": 1})
    first = store.claim("acme", "k-5", fp)
    store.release("acme", "k-5")  # e.g. Dagster unreachable: 503
    retry = store.claim("acme", "k-5", fp)
    assert retry.replay is None and retry.resource_id == first.resource_id
