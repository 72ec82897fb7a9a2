"""Per-tenant limits: a request rate (token bucket, in this process) and a daily quota of jobs and
uploads (in the API store, shared by every API replica). Both answer 429 with Retry-After."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, update
from sqlalchemy.exc import IntegrityError

from trialsynth.api.problems import ProblemError
from trialsynth.api.store import now
from trialsynth.api.store import usage_table as U


class RateLimiter:
    """Token bucket per tenant: ``rate`` requests per second on average, bursts of ``burst``.

    Hand-written: a dozen lines, and the common libraries (slowapi, limits) key on client addresses
    and bring storage backends this one-process bucket does not need.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, last refill)
        self._lock = threading.Lock()

    def check(self, tenant: str) -> None:
        with self._lock:
            t = self.clock()
            tokens, last = self._buckets.get(tenant, (float(self.burst), t))
            tokens = min(float(self.burst), tokens + (t - last) * self.rate)
            if tokens < 1.0:
                self._buckets[tenant] = (tokens, t)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise ProblemError(429, "rate-limited", "Too many requests",
                                   f"tenant {tenant!r} is over {self.rate:g} requests/s; retry in {wait} s",
                                   headers={"Retry-After": str(wait)})
            self._buckets[tenant] = (tokens - 1.0, t)


def _seconds_to_midnight(t: datetime) -> int:
    midnight = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - t).total_seconds()))


def charge_quota(engine: Engine, tenant: str, limit: int) -> None:
    """Count one job or upload against ``tenant``'s quota of the UTC day; 429 when it is used up."""
    t = now()
    day = t.date().isoformat()
    for _ in range(3):
        with engine.begin() as conn:
            if conn.execute(update(U).where(U.c.tenant == tenant, U.c.day == day, U.c.count < limit)
                            .values(count=U.c.count + 1)).rowcount:
                return
        try:
            with engine.begin() as conn:
                conn.execute(insert(U).values(tenant=tenant, day=day, count=1))
            return
        except IntegrityError:
            pass  # the row exists: the quota is used up (or another request inserted it first)
        with engine.connect() as conn:
            used = conn.execute(U.select().where(U.c.tenant == tenant, U.c.day == day)).first()
        if used is not None and used.count >= limit:
            wait = _seconds_to_midnight(t)
            raise ProblemError(429, "quota-exhausted", "Quota exhausted",
                               f"tenant {tenant!r} has used its {limit} jobs and uploads of {day} (UTC)",
                               headers={"Retry-After": str(wait)})
    raise ProblemError(503, "service-unavailable", "Service unavailable", "quota accounting is contended; retry",
                       headers={"Retry-After": "1"})


def refund_quota(engine: Engine, tenant: str) -> None:
    """Give back one unit of today's quota (the charged work did not happen)."""
    day = now().date().isoformat()
    with engine.begin() as conn:
        conn.execute(update(U).where(U.c.tenant == tenant, U.c.day == day, U.c.count > 0).values(count=U.c.count - 1))
