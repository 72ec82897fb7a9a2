"""Traces, metrics and logs of the API, and the ASGI middleware that applies the request limits.

- **Traces** (OpenTelemetry SDK): one server span per request, continuing the caller's W3C
  ``traceparent`` when it sends one. The trace id is returned in ``X-Trace-Id``, written on every log
  line, stored with the job and put on the Dagster run as the tags ``trialsynth/trace_id`` and
  ``trialsynth/traceparent``, so the run and its asset ops belong to the same trace.
- **Metrics** (prometheus-client, ``GET /metrics``): ``trialsynth_api_request_seconds`` histogram and
  ``trialsynth_api_requests_total`` counter, labelled by method, route template and tenant (and status).
- **Logs**: JSON lines with ``trace_id`` and ``tenant_id`` (:class:`JsonFormatter`), one access line per
  request on the ``trialsynth.api.access`` logger.
- **Limits** here because they act before any route: the body size (413; the upload limit for
  ``/ingest/``) and the request timeout (504).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Histogram

from trialsynth.api.problems import ProblemError, too_large
from trialsynth.settings import ApiSettings

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")
traceparent_var: contextvars.ContextVar[str] = contextvars.ContextVar("traceparent", default="")
tenant_var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant_id", default="")
access_log = logging.getLogger("trialsynth.api.access")
_PROPAGATOR = TraceContextTextMapPropagator()
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id, tenant_id and any extras."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", None) or trace_id_var.get() or None,
            "tenant_id": getattr(record, "tenant_id", None) or tenant_var.get() or None,
        }
        doc |= {k: v for k, v in vars(record).items() if k not in self._STANDARD and k not in doc}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


JsonFormatter.converter = time.gmtime


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send the ``trialsynth`` loggers to stderr as JSON lines (``trialsynth api serve``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("trialsynth")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class Telemetry:
    """The app's tracer and Prometheus registry (one per app, so test apps do not collide)."""

    def __init__(self, span_processor: SpanProcessor | None = None) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": "trialsynth-api"}))
        if span_processor is not None:
            self.provider.add_span_processor(span_processor)
        self.tracer = self.provider.get_tracer("trialsynth.api")
        self.registry = CollectorRegistry()
        labels = ["method", "route", "tenant"]
        self.latency = Histogram("trialsynth_api_request_seconds", "API request latency by route and tenant",
                                 labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.requests = Counter("trialsynth_api_requests", "API requests by route, tenant and status",
                                [*labels, "status"], registry=self.registry)


def run_trace_tags() -> dict[str, str]:
    """Dagster run tags that put a run in the current request's trace."""
    tags = {"trialsynth/trace_id": trace_id_var.get()}
    if traceparent_var.get():
        tags["trialsynth/traceparent"] = traceparent_var.get()
    return {k: v for k, v in tags.items() if v}


class ApiMiddleware:
    """Pure ASGI: span, body limit, timeout, metrics and the access log around every HTTP request."""

    def __init__(self, app, telemetry: Telemetry, api: ApiSettings) -> None:
        self.app, self.telemetry, self.api = app, telemetry, api

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        limit = self.api.max_upload_bytes if path.startswith("/ingest/") else self.api.max_body_bytes
        status = {"code": 500, "started": False}
        with self.telemetry.tracer.start_as_current_span(
                f"{method} {path}", context=_PROPAGATOR.extract(headers), kind=trace.SpanKind.SERVER) as span:
            ctx = span.get_span_context()
            trace_id = format(ctx.trace_id, "032x")
            trace_id_var.set(trace_id)
            traceparent_var.set(f"00-{trace_id}-{format(ctx.span_id, '016x')}-01")
            tenant_var.set("")
            scope.setdefault("state", {})["trace_id"] = trace_id
            received = 0

            async def counted_receive():
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
                return message

            async def tracked_send(message):
                if message["type"] == "http.response.start":
                    if status["started"]:
                        return  # the timeout answered already
                    status.update(code=message["status"], started=True)
                    message["headers"] = [*message.get("headers", []), (b"x-trace-id", trace_id.encode())]
                elif status.get("closed"):
                    return
                await send(message)

            try:
                declared = int(headers.get("content-length") or 0)
            except ValueError:
                declared = 0
            try:
                if declared > limit:
                    raise too_large(limit)
                await asyncio.wait_for(self.app(scope, counted_receive, tracked_send), self.api.request_timeout_s)
            except TimeoutError:
                await self._problem(tracked_send, status, ProblemError(
                    504, "request-timeout", "Request timeout",
                    f"the request took longer than {self.api.request_timeout_s:g} s"), path)
            except ProblemError as exc:  # raised before the app read the body
                await self._problem(tracked_send, status, exc, path)
            finally:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                tenant = scope["state"].get("tenant") or "-"
                elapsed = time.perf_counter() - started
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status["code"])
                span.set_attribute("trialsynth.tenant", tenant)
                self.telemetry.latency.labels(method, route, tenant).observe(elapsed)
                self.telemetry.requests.labels(method, route, tenant, str(status["code"])).inc()
                access_log.info("%s %s %s", method, path, status["code"], extra={
                    "method": method, "route": route, "status": status["code"], "trace_id": trace_id,
                    "duration_ms": round(elapsed * 1000, 2), "tenant_id": tenant if tenant != "-" else None})

    @staticmethod
    async def _problem(send, status: dict, exc: ProblemError, path: str) -> None:
        if status["started"]:
            return
        response = exc.response(path)
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})
        status["closed"] = True
