"""Idempotency-Key for every POST, as the IETF httpapi draft "The Idempotency-Key HTTP Header Field" says.

Per tenant and key, one row in ``api_idempotency_keys``:

- first request: the key is claimed (``in_flight``) with the request's fingerprint (sha256 of method,
  path and the canonical payload) and a resource id (the job id to be) that stays the same for every
  retry with this key;
- it completes with a response below 500: the response is stored (``done``) and every later request
  with the same key and payload gets it again, byte for byte, also after a restart; the same key with
  another payload answers 422; a request while the first is still in flight answers 409;
- it ends in a 5xx (Dagster unreachable ...) or a 429 (quota): the row becomes ``retryable``, keeping
  the resource id, so the client's retry with the same key does the work once (the job submitter looks
  for a Dagster run already tagged with that id before it launches one);
- keys are kept ``ttl`` (24 h); an expired key is free again. An in-flight claim whose process died is
  taken over after ``LOCK_S``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response

from trialsynth.api.problems import IDEMPOTENCY_HEADER, ProblemError, field_error
from trialsynth.api.store import idempotency_table as T
from trialsynth.api.store import now, utc
from trialsynth.hashing import sha256_json

IN_FLIGHT, DONE, RETRYABLE = "in_flight", "done", "retryable"
LOCK_S = 60
KEPT_HEADERS = ("location", "content-type", "x-cache")
REPLAY_HEADER = "Idempotent-Replayed"


def fingerprint(method: str, path: str, payload: Any) -> str:
    """sha256 of the request's method, path and canonical JSON payload (key order and spacing ignored)."""
    return sha256_json([method.upper(), path, payload])


@dataclass(frozen=True)
class Claim:
    resource_id: str
    replay: Response | None = None  # the stored response of a completed request with this key


class IdempotencyStore:
    def __init__(self, engine: Engine, ttl_s: int = 86400) -> None:
        self.engine, self.ttl = engine, timedelta(seconds=ttl_s)

    def claim(self, tenant: str, key: str, fp: str) -> Claim:
        """Claim ``key`` for a request with fingerprint ``fp`` (see module doc for the answers)."""
        resource_id = uuid.uuid4().hex
        if self._insert(tenant, key, fp, resource_id):  # the common case: a new key, one statement
            return Claim(resource_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(T).where(T.c.tenant == tenant, T.c.key == key)).first()
        if row is None or utc(row.expires_at) < now():  # expired (or deleted meanwhile): the key is free again
            with self.engine.begin() as conn:
                conn.execute(delete(T).where(T.c.tenant == tenant, T.c.key == key, T.c.expires_at < now()))
            if self._insert(tenant, key, fp, resource_id):
                return Claim(resource_id)
            with self.engine.connect() as conn:
                row = conn.execute(select(T).where(T.c.tenant == tenant, T.c.key == key)).first()
        if row.fingerprint != fp:
            raise _key_reused(key)
        if row.state == DONE:
            headers = dict(row.headers or {}) | {REPLAY_HEADER: "true"}
            return Claim(row.resource_id, Response(row.response, status_code=row.status_code, headers=headers))
        with self.engine.begin() as conn:  # retryable, or in flight past its lock: take it over
            taken = conn.execute(update(T).where(
                T.c.tenant == tenant, T.c.key == key, T.c.fingerprint == fp,
                or_(T.c.state == RETRYABLE, and_(T.c.state == IN_FLIGHT, T.c.locked_until < now())),
            ).values(state=IN_FLIGHT, locked_until=now() + timedelta(seconds=LOCK_S))).rowcount
        if taken != 1:
            raise ProblemError(409, "idempotency-key-in-flight", "Request in progress",
                               f"a request with {IDEMPOTENCY_HEADER} {key!r} is still being processed; retry later",
                               headers={"Retry-After": "1"})
        return Claim(row.resource_id)

    def _insert(self, tenant: str, key: str, fp: str, resource_id: str) -> bool:
        t = now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(T).values(tenant=tenant, key=key, fingerprint=fp, state=IN_FLIGHT,
                                              resource_id=resource_id, locked_until=t + timedelta(seconds=LOCK_S),
                                              created_at=t, expires_at=t + self.ttl))
            return True
        except IntegrityError:
            return False

    def complete(self, tenant: str, key: str, response: Response) -> None:
        headers = {k: v for k, v in response.headers.items() if k in KEPT_HEADERS}
        with self.engine.begin() as conn:
            conn.execute(update(T).where(T.c.tenant == tenant, T.c.key == key).values(
                state=DONE, status_code=response.status_code, response=bytes(response.body).decode(), headers=headers))

    def release(self, tenant: str, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(T).where(T.c.tenant == tenant, T.c.key == key).values(state=RETRYABLE))

    def purge_expired(self) -> int:
        """Delete every expired key (at startup; a key is also freed when it is reused after expiry)."""
        with self.engine.begin() as conn:
            return conn.execute(delete(T).where(T.c.expires_at < now())).rowcount


def _key_reused(key: str) -> ProblemError:
    detail = f"{IDEMPOTENCY_HEADER} {key!r} was used for a different request; use a new key for a new request"
    return ProblemError(422, "idempotency-key-reused", "Idempotency-Key reused", detail,
                        errors=[field_error(f"header.{IDEMPOTENCY_HEADER}", detail)])


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, allow_nan=False), status_code=status, media_type="application/json",
                    headers=headers)


def run_idempotent(store: IdempotencyStore, tenant: str, key: str, fp: str,
                   handler: Callable[[str], Response]) -> Response:
    """Claim ``key``, run ``handler(resource_id)`` unless a stored response replays, and store its outcome.

    Responses and problems below 500 are stored; 5xx problems and 429 leave the key retryable."""
    claim = store.claim(tenant, key, fp)
    if claim.replay is not None:
        return claim.replay
    try:
        response = handler(claim.resource_id)
    except ProblemError as exc:
        if exc.status >= 500 or exc.status == 429:
            store.release(tenant, key)
            raise
        response = exc.response()
    except BaseException:
        store.release(tenant, key)
        raise
    store.complete(tenant, key, response)
    return response
