"""Open every dashboard in headless Chromium as a given user, wait for its charts, classify each
chart (drawn / table / number / empty / error), read what it shows and save a screenshot.

Per chart: its state, its text (tables, legends-as-DOM, big numbers), the empty-state message as
displayed (dashboard CSS may replace Superset's), and the status colours it paints (pixels of
``<canvas>`` charts, cell backgrounds of tables) counted per status. Per dashboard: the load time,
cold (first visit, fresh browser profile: no HTTP cache) and warm (a reload), from navigation to
every chart settled (drawn, table, number, empty or error).

Uses Python playwright (from ``.venv-superset``) driving Debian's ``/usr/bin/chromium``; never
``playwright install``. Prints one JSON document: ``{slug: {"charts": [{"title", "state", "text",
"empty_message", "status_colours"}], "canvas_or_svg": n, "screenshot": path, "cold_s": s, "warm_s": s,
"cold_breakdown": {...}}}`` (``cold_breakdown``: where the cold load's time went, see ``_Waterfall.summary``).

Run: ``.venv-superset/bin/python -m infra.superset.browser_check --url URL --user U --password-file F
--out test-artifacts/superset [--dashboards a,b]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from infra.superset.load_report import tree_cpu_s
from infra.superset.spec import STATUS_COLOURS

CHROMIUM = "/usr/bin/chromium"
# STACK-NOTES: no sandbox (root in a container), no GPU, no background network of Chromium's own.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOLDER = '[data-test="dashboard-component-chart-holder"]'

# In the page: the state of every chart holder once nothing is loading any more.
_CLASSIFY_JS = """
(holder) => Array.from(document.querySelectorAll(holder)).map((el) => {
  const title = (el.querySelector('[data-test="editable-title"], .header-title') || el).innerText.split('\\n')[0];
  const text = el.innerText || '';
  let state = 'pending';
  if (el.querySelector('.ant-alert-error, [data-test="error-tooltip"]') || /Unexpected error|Error:|Traceback/.test(text)) {
    state = 'error';
  } else if (el.querySelector('[data-test="loading-indicator"], .loading')) {
    state = 'loading';
  } else if (el.querySelector('[data-test="empty-state"]') || /No results/.test(text)) {
    state = 'empty';
  } else if (el.querySelector('table')) {
    state = 'table';
  } else if (el.querySelector('canvas, [data-test="chart-container"] svg, .echarts-for-react')) {
    state = 'drawn';
  } else if (el.querySelector('.header-line, .big-number')) {
    state = 'number';
  }
  return {title, state, canvas_or_svg: el.querySelectorAll('canvas, svg').length};
})
"""

# In the page: text, displayed empty-state message and status colours of every chart holder.
_READ_JS = """
([holder, palette]) => {
  const hex = (r, g, b) => '#' + [r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('').toUpperCase();
  const rgb = /rgba?\\((\\d+),\\s*(\\d+),\\s*(\\d+)/;
  const names = Object.fromEntries(Object.entries(palette).map(([k, v]) => [v.toUpperCase(), k]));
  return Array.from(document.querySelectorAll(holder)).map((el) => {
    const colours = {};
    const add = (h, n) => { if (names[h]) colours[names[h]] = (colours[names[h]] || 0) + n; };
    for (const c of el.querySelectorAll('canvas')) {
      try {
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < data.length; i += 4 * 7) add(hex(data[i], data[i + 1], data[i + 2]), 1);
      } catch (e) { /* a webgl or tainted canvas: no pixels to read */ }
    }
    for (const c of el.querySelectorAll('td, th, div, span')) {
      const m = rgb.exec(getComputedStyle(c).backgroundColor);
      if (m) add(hex(+m[1], +m[2], +m[3]), 1);
    }
    const empty = el.querySelector('[role="img"][aria-label="empty"] + div > p');
    let emptyMessage = null;
    if (empty) {
      const after = getComputedStyle(empty, '::after').content;
      emptyMessage = after && after !== 'none' && after !== 'normal' ? after.replace(/^"|"$/g, '') : empty.innerText;
    }
    return {text: el.innerText || '', empty_message: emptyMessage, status_colours: colours};
  });
}
"""


def login(page: Page, url: str, user: str, password: str) -> None:
    page.goto(f"{url}/login/")
    page.fill('[data-test="username-input"] input, input[name="username"], #username', user)
    page.fill('[data-test="password-input"] input, input[name="password"], #password', password)
    page.click('[data-test="login-button"], button[type="submit"]')
    page.wait_for_url(lambda u: "/login" not in u, timeout=90_000)
    # the landing page's own API calls (recent activity, chart and dashboard lists) finish first, as
    # they would before a person clicks a dashboard; else the server still works on them while the
    # dashboard's cold load is timed
    page.wait_for_load_state("networkidle", timeout=90_000)


class _Waterfall:
    """What the browser fetched and computed during one page load, from the DevTools protocol:
    every request's start, server wait (request sent to first response byte) and end, the bytes on
    the wire and the response encoding; the main thread's busy time (Performance metrics: the wall
    time of its tasks, which grows when other processes hold the CPU) and the CPU seconds all browser
    processes used."""

    def __init__(self, page: Page) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.requests: dict[str, dict[str, Any]] = {}
        for name, handler in (("Network.requestWillBeSent", self._sent), ("Network.responseReceived", self._response),
                              ("Network.loadingFinished", self._finished)):
            self.cdp.on(name, handler)
        self.cdp.send("Network.enable")
        self.cdp.send("Performance.enable")
        self.busy0 = self._busy()
        self.cpu0 = tree_cpu_s(os.getpid(), own=False)

    def _busy(self) -> dict[str, float]:
        metrics = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        return {"task": metrics["TaskDuration"], "script": metrics["ScriptDuration"]}

    def _sent(self, e: dict[str, Any]) -> None:
        self.requests[e["requestId"]] = {"url": e["request"]["url"], "type": e.get("type"), "start": e["timestamp"]}

    def _response(self, e: dict[str, Any]) -> None:
        if (r := self.requests.get(e["requestId"])) is not None:
            timing = e["response"].get("timing") or {}
            headers = {k.lower(): v for k, v in e["response"]["headers"].items()}
            r.update(status=e["response"]["status"], encoding=headers.get("content-encoding"),
                     length=int(headers.get("content-length") or 0),
                     server_s=(timing["receiveHeadersEnd"] - timing["sendEnd"]) / 1000 if timing else None)

    def _finished(self, e: dict[str, Any]) -> None:
        if (r := self.requests.get(e["requestId"])) is not None:
            r.update(end=e["timestamp"], bytes=e["encodedDataLength"])

    def summary(self, settled_s: float) -> dict[str, Any]:
        """Seconds from the page's first request: HTML, the dashboard's bootstrap API calls
        (dashboard, charts, datasets), the charts' data requests, the native filters' value queries
        and every other API call, each group's first start, last end and longest server wait; the
        static files fetched (count, kB on the wire, scripts and styles sent uncompressed); the
        main thread's busy time and the browser's CPU seconds, from navigation to ``settled_s``."""
        busy, cpu = self._busy(), tree_cpu_s(os.getpid(), own=False)
        self.cdp.detach()
        done = [r for r in self.requests.values() if "end" in r]
        t0 = min((r["start"] for r in done), default=0.0)
        api = [r for r in done if "/api/v1/" in r["url"]]

        def span(rs: list[dict[str, Any]]) -> dict[str, Any]:
            waits = [r["server_s"] for r in rs if r.get("server_s") is not None]
            return {"n": len(rs), "first_start_s": round(min((r["start"] - t0 for r in rs), default=0), 2),
                    "last_end_s": round(max((r["end"] - t0 for r in rs), default=0), 2),
                    "max_server_s": round(max(waits, default=0), 2)}

        chart_data = [r for r in api if "/api/v1/chart/data?form_data=" in r["url"]]  # the charts' own queries
        filter_values = [r for r in api if r["url"].split("?")[0].endswith("/api/v1/chart/data") and r not in chart_data]
        bootstrap = [r for r in api if "/api/v1/dashboard/" in r["url"] and "filter_state" not in r["url"]
                     and "favorite_status" not in r["url"]]
        static = [r for r in done if "/static/" in r["url"] and r["bytes"] > 0]  # 0 bytes: from the HTTP cache
        # scripts and styles of 1 kB or more (Flask-Compress leaves bodies under 500 bytes as they are)
        scripts = [r for r in static if r["url"].split("?")[0].endswith((".js", ".css"))
                   and (r.get("encoding") or r.get("length", 0) >= 1024)]
        html_end = next((r["end"] - t0 for r in done if r["type"] == "Document"), 0.0)
        last_api = max((r["end"] - t0 for r in api), default=0.0)
        return {"html_s": round(html_end, 2), "bootstrap": span(bootstrap), "chart_data": span(chart_data),
                "filter_values": span(filter_values),
                "other_api": span([r for r in api if r not in bootstrap + chart_data + filter_values]),
                "static": {"n": len(static), "kb": round(sum(r["bytes"] for r in static) / 1024),
                           "js_css_uncompressed": sum(not r.get("encoding") for r in scripts)},
                "settled_after_last_api_s": round(settled_s - last_api, 2),
                "browser_cpu_s": round(cpu - self.cpu0, 2),
                "main_thread_busy_s": round(busy["task"] - self.busy0["task"], 2),
                "script_s": round(busy["script"] - self.busy0["script"], 2)}


def _load(page: Page, url: str, slug: str, timeout_s: float) -> tuple[float, list[dict[str, Any]]]:
    """Navigate to the dashboard; seconds until every chart settled, and the charts' states."""
    t0 = time.monotonic()
    page.goto(f"{url}/superset/dashboard/{slug}/?standalone=0")
    page.wait_for_selector(HOLDER, timeout=timeout_s * 1000)
    charts: list[dict[str, Any]] = []
    while time.monotonic() < t0 + timeout_s:
        charts = page.evaluate(_CLASSIFY_JS, HOLDER)
        if charts and all(c["state"] not in ("pending", "loading") for c in charts):
            break
        page.wait_for_timeout(50)
    return time.monotonic() - t0, charts


def check_dashboard(page: Page, url: str, slug: str, out_dir: Path, timeout_s: float = 90) -> dict[str, Any]:
    waterfall = _Waterfall(page)
    cold_s, _ = _load(page, url, slug, timeout_s)
    breakdown = waterfall.summary(cold_s)
    warm_s, charts = _load(page, url, slug, timeout_s)
    page.wait_for_timeout(1000)  # no chart animations (theme), but late paints (web fonts) before pixels and screenshot
    charts = page.evaluate(_CLASSIFY_JS, HOLDER)
    for chart, read in zip(charts, page.evaluate(_READ_JS, [HOLDER, STATUS_COLOURS]), strict=True):
        chart.update(read)
    shot = out_dir / f"{slug}.png"
    page.screenshot(path=str(shot))  # the viewport holds every dashboard: no full-page resize to re-render
    # what the screenshot shows: the charts still on the page, settled, when it was taken
    shown = [c for c in page.evaluate(_CLASSIFY_JS, HOLDER) if c["state"] not in ("pending", "loading")]
    return {"charts": charts, "canvas_or_svg": sum(c["canvas_or_svg"] for c in charts), "screenshot": str(shot),
            "charts_in_screenshot": len(shown), "cold_s": round(cold_s, 2), "warm_s": round(warm_s, 2), "cold_breakdown": breakdown,
            "error_banners": page.locator(".ant-alert-error, .ant-message-error").count()}


# In the page, as the logged-in user: Explore's Samples request for a dataset (what the Samples
# tab shows), with the session cookie and CSRF token the UI uses.
_SAMPLES_JS = """
async (table) => {
  const q = encodeURIComponent(`(filters:!((col:table_name,opr:eq,value:'${table}')),columns:!(id))`);
  const ds = (await (await fetch(`/api/v1/dataset/?q=${q}`)).json()).result[0].id;
  const csrf = (await (await fetch('/api/v1/security/csrf_token/')).json()).result;
  const r = await fetch(`/datasource/samples?datasource_id=${ds}&datasource_type=table&per_page=100&page=1`,
                        {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRFToken': csrf}, body: '{}'});
  const body = await r.json();
  return {status: r.status, message: body.message || (body.errors && body.errors[0] && body.errors[0].message) || null,
          tenants: body.result ? [...new Set(body.result.data.map((row) => row.tenant_id))] : []};
}
"""


def check_viewer_pages(page: Page, url: str, paths: list[str]) -> dict[str, dict[str, Any]]:
    """What a viewer sees on pages it may not use: the HTTP status, whether the body is raw JSON,
    and the visible text."""
    out = {}
    for path in paths:
        response = page.goto(f"{url}{path}")
        body = page.inner_text("body") if page.locator("body").count() else ""
        out[path] = {"status": response.status if response else None, "final_url": page.url,
                     "raw_json": body.lstrip().startswith(("{", "[")), "text": body[:2000]}
    page.goto(f"{url}/dashboard/list/")
    out["samples:mart_safety"] = page.evaluate(_SAMPLES_JS, "mart_safety")
    return out


def run(url: str, user: str, password: str, slugs: list[str], out_dir: Path,
        viewer_paths: list[str] | None = None) -> dict[str, Any]:
    """Each dashboard in its own fresh browser profile (so its first visit is cold: no HTTP cache,
    as a user opening it for the first time after logging in), then the viewer pages."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    with sync_playwright() as pw:
        for slug in [*slugs, None]:
            if slug is None and not viewer_paths:
                break
            with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
                context = pw.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                    viewport={"width": 1440, "height": 2400})
                page = context.pages[0] if context.pages else context.new_page()
                login(page, url, user, password)
                if slug is None:
                    result["_viewer_pages"] = check_viewer_pages(page, url, viewer_paths or [])
                else:
                    result[slug] = check_dashboard(page, url, slug, out_dir)
                context.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Screenshot and check every dashboard in headless Chromium.")
    p.add_argument("--url", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-file", type=Path, required=True)
    p.add_argument("--dashboards", required=True, help="comma-separated dashboard slugs")
    p.add_argument("--out", type=Path, required=True, help="screenshot folder")
    p.add_argument("--viewer-pages", default="", help="comma-separated paths to open as the user (friendly pages check)")
    args = p.parse_args(argv)
    result = run(args.url, args.user, args.password_file.read_text().strip(), args.dashboards.split(","), args.out,
                 [v for v in args.viewer_pages.split(",") if v])
    json.dump(result, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
