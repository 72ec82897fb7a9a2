"""Run one query in Superset's SQL Lab page in headless Chromium, as a given user, and read the result
grid (tests/test_superset_tenant_routing.py: what a tenant's analyst sees on the page).

Logs in, opens a new SQL Lab tab, puts the SQL into its Ace editor, presses Run and waits for the
result grid or an error. Prints one JSON document: ``{"grid_text": ..., "error": ..., "screenshot": path}``.
Python playwright from ``.venv-superset`` with Debian's ``/usr/bin/chromium`` (as
:mod:`infra.superset.browser_check`).

Run: ``.venv-superset/bin/python -m infra.superset.sqllab_browser --url URL --user U --password-file F
--sql "SELECT ..." --out test-artifacts/superset/tenant_routing``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from infra.superset.browser_check import CHROMIUM, CHROMIUM_ARGS, login

# :visible everywhere: SQL Lab keeps the user's earlier tabs (editors, grids) in the page, hidden
GRID = '[data-test="table-container"]:visible'
ERROR = ".ant-alert-error:visible, [data-test='error-alert']:visible"
EDITOR = ".ace_editor:visible"


def run_query(url: str, user: str, password: str, sql: str, out_dir: Path, timeout_s: float = 90) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                        args=CHROMIUM_ARGS, viewport={"width": 1440, "height": 1200})
        page = context.pages[0] if context.pages else context.new_page()
        screenshot = out_dir / f"sqllab_{user}.png"
        try:
            login(page, url, user, password)
            page.goto(f"{url}/sqllab/")
            page.click('[data-test="add-tab-icon"]', timeout=timeout_s * 1000)
            editor = page.locator(EDITOR)
            editor.wait_for(timeout=timeout_s * 1000)
            # the editor is Ace (window.ace): set its text rather than typing into autocompletion
            editor.evaluate("(el, sql) => window.ace.edit(el).setValue(sql, 1)", sql)
            page.locator('[data-test="run-query-action"]:visible').click()
            page.wait_for_selector(f"{GRID}, {ERROR}", timeout=timeout_s * 1000)
        finally:
            page.screenshot(path=str(screenshot), full_page=True)  # also of where it got stuck
        grid = page.locator(GRID)
        error = page.locator(ERROR)
        result = {"grid_text": grid.first.inner_text() if grid.count() else "",
                  "error": error.first.inner_text() if error.count() else None, "screenshot": str(screenshot)}
        context.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run a query in SQL Lab in headless Chromium and print the result grid.")
    p.add_argument("--url", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-file", type=Path, required=True)
    p.add_argument("--sql", required=True)
    p.add_argument("--out", type=Path, required=True, help="screenshot folder")
    args = p.parse_args(argv)
    json.dump(run_query(args.url, args.user, args.password_file.read_text().strip(), args.sql, args.out), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
