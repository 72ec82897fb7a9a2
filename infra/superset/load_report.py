"""Markdown table of dashboard load times from ``browser_check.json`` (written by the Superset browser
test, ``tests/test_superset_dashboards.py``): cold (first visit in a fresh browser profile, right after
login) and warm (a reload) per dashboard, with the machine's load while it ran.

Run: ``python -m infra.superset.load_report test-artifacts/superset/*/browser_check.json
--out benchmarks/results/superset.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

GOAL_S = 3.0
RERUN = ("nice .venv/bin/pytest -q tests/test_superset_dashboards.py -m 'slow or not slow' -k chromium && "
         ".venv/bin/python -m infra.superset.load_report test-artifacts/superset/*/browser_check.json "
         "--out benchmarks/results/superset.md")


def _table(result: dict) -> tuple[float, list[str]]:
    slugs = [s for s in result if not s.startswith("_")]
    rows = ["| dashboard | charts | cold (s) | warm (s) | cold / warm |", "|---|---|---|---|---|"]
    for slug in slugs:
        page = result[slug]
        rows.append(f"| {slug} | {len(page['charts'])} | {page['cold_s']:.2f} | {page['warm_s']:.2f} | "
                    f"{page['cold_s'] / page['warm_s']:.2f}x |")
    return max(result[s]["cold_s"] for s in slugs), rows


def report(results: dict[str, dict], notes: str = "") -> str:
    """The markdown page: per warehouse target, one row per dashboard; worst cold load against the goal."""
    lines = [
        "# Superset dashboard load in the browser", "",
        f"Rerun: `{RERUN}`  ",
        f"Machine: {next(iter(results.values())).get('_machine', {}).get('cpus', '?')} CPU cores ({platform.machine()}), "
        "shared with other sessions (load average per run below). Headless Chromium (Debian), 1440x2400 viewport, "
        "tenant user `acme_viewer` (row-level security on), Superset 6.1 under gunicorn (2 workers x 4 threads) "
        "on the generated two-tenant sample warehouse.", "",
        "Cold = first visit of the dashboard in a fresh browser profile right after logging in (no HTTP cache; "
        "Superset's chart-results cache empty for this dashboard); warm = a reload (browser and results cache "
        "warm). Measured from navigation until every chart has settled (drawn, table, number or empty state).", "",
    ]
    for target, result in results.items():
        machine = result.get("_machine", {})
        worst, rows = _table(result)
        lines += [f"## Warehouse: {target}", "",
                  f"Date: {machine.get('date', date.today().isoformat())}; 1-minute load average "
                  f"{machine.get('load_before', '?')} before and {machine.get('load_after', '?')} after the run.", "",
                  f"**Worst cold load: {worst:.2f} s — goal < {GOAL_S:.0f} s: {'PASS' if worst < GOAL_S else 'NOT MET'}**",
                  "", *rows, ""]
    return "\n".join(lines + ([notes] if notes else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("json", type=Path, nargs="+", help="browser_check.json of each target (folder name = target)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--notes", type=Path, help="markdown appended below the table")
    args = p.parse_args(argv)
    notes = args.notes.read_text() if args.notes else ""
    args.out.write_text(report({path.parent.name: json.loads(path.read_text()) for path in args.json}, notes))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
