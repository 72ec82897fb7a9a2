"""Traces, metrics and JSON logs: the trace id (the caller's when it sends a traceparent) in the response,
the span and the log line with the tenant; Prometheus latency histograms per route and tenant."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.api_support import auth, client, local_settings
from trialsynth.api.observability import JsonFormatter


def test_trace_id_continues_the_callers_trace_and_reaches_span_and_logs(tmp_path, caplog):
    exporter = InMemorySpanExporter()
    with client(local_settings(tmp_path), span_processor=SimpleSpanProcessor(exporter)) as c:
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        with caplog.at_level(logging.INFO, logger="trialsynth.api.access"):
            r = c.get("/jobs", headers=auth(c.app.state.ctx.settings, "acme")
                      | {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        assert r.status_code == 200 and r.headers["x-trace-id"] == trace_id
        (span,) = exporter.get_finished_spans()
        assert format(span.context.trace_id, "032x") == trace_id
        assert span.attributes["http.route"] == "/jobs" and span.attributes["trialsynth.tenant"] == "acme"
        (record,) = [rec for rec in caplog.records if rec.name == "trialsynth.api.access"]
        line = json.loads(JsonFormatter().format(record))
        assert line["tenant_id"] == "acme" and line["status"] == 200 and line["route"] == "/jobs"
        assert line["trace_id"] == trace_id
        fresh = c.get("/healthz")
        assert len(fresh.headers["x-trace-id"]) == 32 and fresh.headers["x-trace-id"] != trace_id


def test_metrics_have_latency_histograms_per_route_and_tenant(tmp_path):
    with client(local_settings(tmp_path)) as c:
        s = c.app.state.ctx.settings
        for tenant in ("acme", "acme", "globex"):
            c.get("/jobs", headers=auth(s, tenant))
        c.get("/jobs/unknown-id", headers=auth(s, "acme"))
        text = c.get("/metrics").text
        count = 'trialsynth_api_request_seconds_count{method="GET",route="/jobs",tenant="%s"}'
        assert f"{count % 'acme'} 2.0" in text and f"{count % 'globex'} 1.0" in text
        assert 'trialsynth_api_request_seconds_bucket{le="0.3",method="GET",route="/jobs",tenant="acme"}' in text
        assert 'route="/jobs/{job_id}",status="404",tenant="acme"' in text  # the route template, not the id
