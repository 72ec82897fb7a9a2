"""Open every dashboard in headless Chromium as a given user, wait for its charts, classify each
chart (drawn / table / number / empty / error) and save a full-page screenshot.

Uses Python playwright (from ``.venv-superset``) driving Debian's ``/usr/bin/chromium``; never
``playwright install``. Prints one JSON document: ``{slug: {"charts": [{"title", "state"}],
"canvas_or_svg": n, "screenshot": path, "seconds": s}}``.

Run: ``.venv-superset/bin/python -m infra.superset.browser_check --url URL --user U --password-file F
--out test-artifacts/superset [--dashboards a,b]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

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


def login(page: Page, url: str, user: str, password: str) -> None:
    page.goto(f"{url}/login/")
    page.fill('[data-test="username-input"] input, input[name="username"], #username', user)
    page.fill('[data-test="password-input"] input, input[name="password"], #password', password)
    page.click('[data-test="login-button"], button[type="submit"]')
    page.wait_for_url(lambda u: "/login" not in u, timeout=90_000)


def check_dashboard(page: Page, url: str, slug: str, out_dir: Path, timeout_s: float = 90) -> dict[str, Any]:
    t0 = time.monotonic()
    page.goto(f"{url}/superset/dashboard/{slug}/?standalone=0")
    page.wait_for_selector(HOLDER, timeout=timeout_s * 1000)
    charts: list[dict[str, Any]] = []
    deadline = t0 + timeout_s
    while time.monotonic() < deadline:
        charts = page.evaluate(_CLASSIFY_JS, HOLDER)
        if charts and all(c["state"] not in ("pending", "loading") for c in charts):
            break
        page.wait_for_timeout(500)
    page.wait_for_timeout(800)  # let the chart animations finish before the screenshot
    charts = page.evaluate(_CLASSIFY_JS, HOLDER)
    shot = out_dir / f"{slug}.png"
    page.screenshot(path=str(shot), full_page=True)
    return {"charts": charts, "canvas_or_svg": sum(c["canvas_or_svg"] for c in charts), "screenshot": str(shot),
            "seconds": round(time.monotonic() - t0, 1),
            "error_banners": page.locator(".ant-alert-error, .ant-message-error").count()}


def run(url: str, user: str, password: str, slugs: list[str], out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 2000})
        page = context.pages[0] if context.pages else context.new_page()
        login(page, url, user, password)
        for slug in slugs:
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
    args = p.parse_args(argv)
    result = run(args.url, args.user, args.password_file.read_text().strip(), args.dashboards.split(","), args.out)
    json.dump(result, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
