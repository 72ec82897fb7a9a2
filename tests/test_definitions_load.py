"""Loading the Dagster definitions stays cheap: every run process and every code-server reload pays it.

- In a fresh interpreter, ``import orchestration.definitions`` costs less than its CPU budget and
  imports none of the heavy libraries the assets use at run time (torch, scikit-learn, scipy,
  matplotlib, Great Expectations), nor the optional module jsonschema would compile a grammar for.
- A fresh parsed dbt manifest is used as it is; a missing or stale one is parsed again, once, with a
  message naming why; the one the image ships (dbt_project/parsed) is found when dbt's target folder
  is empty (as its Kubernetes volume is).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import assets.warehouse as warehouse
from trialsynth.settings import PROJECT_ROOT, get_settings

# CPU seconds (user + system) of one definitions load in a fresh interpreter, from the first import to the
# Definitions object, as a code server or run worker pays it (they go on running; the ~1 s of interpreter
# finalization a one-shot process adds at exit is not loading). Issue 14 asks for 3 s: measured 2.2-2.6 s
# on a quiet machine (benchmarks/results/full_size.md, "Definitions load"; 9.5-10.2 s before issue 14).
# Dagster (0.4 s) and dagster-dbt (1.4 s, dbt-core's classes) are needed to declare the dbt assets.
BUDGET_CPU_S = 3.0
# On the 2 shared cores (load 8-13) the same load measured up to 1.2x its idle CPU time (cache and
# hyper-thread contention); torch, scikit-learn or jsonschema's grammar are caught by the module check.
LOADED_MARGIN = 1.4
HEAVY = ("torch", "sklearn", "scipy", "matplotlib", "great_expectations", "rfc3987_syntax")
PROBE = """
import json, sys, time
started, cpu = time.perf_counter(), time.process_time()
import orchestration.definitions
print(json.dumps({{"cpu": time.process_time() - cpu, "wall": time.perf_counter() - started,
                  "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def _load_once() -> tuple[float, float, list[str]]:
    """(CPU seconds, wall seconds, heavy modules imported) of one definitions load in a fresh process."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY)], cwd=PROJECT_ROOT, check=True,
                         capture_output=True, text=True, timeout=180)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["cpu"], result["wall"], result["heavy"]


def test_definitions_load_within_cpu_budget_without_heavy_libraries():
    limit = BUDGET_CPU_S * LOADED_MARGIN
    runs = []
    for _ in range(2):  # the best of two: one slow run on a busy machine is not a regression
        cpu, wall, heavy = _load_once()
        assert heavy == [], f"imported at definitions load: {heavy} (import them inside the assets that use them)"
        runs.append((cpu, wall))
        if cpu < limit:
            break
    load = os.getloadavg()[0]
    assert min(c for c, _ in runs) < limit, (
        f"definitions load took {[f'{c:.2f} s CPU / {w:.1f} s wall' for c, w in runs]} at load average {load:.1f}; "
        f"budget {BUDGET_CPU_S} s CPU (x{LOADED_MARGIN} on a loaded 2-core machine)")


@pytest.fixture
def dbt_copy(tmp_path, monkeypatch, settings):
    """A copy of the dbt project's sources (no target/), the settings pointing at it."""
    project = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs", "parsed"))
    monkeypatch.setenv("TRIALSYNTH_DBT_PROJECT_DIR", str(project))
    get_settings.cache_clear()
    return project


def _manifest(project: Path, folder: str, mtime: float | None = None) -> Path:
    path = project / folder / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_a_fresh_manifest_is_used_without_parsing(dbt_copy, monkeypatch):
    monkeypatch.setattr(warehouse, "parse_dbt_project", lambda *_: pytest.fail("parsed a fresh manifest"))
    fresh = _manifest(dbt_copy, "target")
    assert warehouse.manifest_staleness(fresh, dbt_copy) is None
    assert warehouse.prepare_dbt_project().manifest_path == fresh


def test_the_image_manifest_is_found_when_the_target_folder_is_empty(dbt_copy, monkeypatch):
    monkeypatch.setattr(warehouse, "parse_dbt_project", lambda *_: pytest.fail("parsed the shipped manifest"))
    shipped = _manifest(dbt_copy, "parsed")
    assert warehouse.prepare_dbt_project().manifest_path == shipped


def test_a_stale_or_missing_manifest_is_parsed_once_saying_why(dbt_copy, monkeypatch, caplog):
    model = next((dbt_copy / "models").rglob("*.sql"))
    stale = _manifest(dbt_copy, "target", mtime=model.stat().st_mtime - 60)
    reason = warehouse.manifest_staleness(stale, dbt_copy)
    assert reason is not None and reason.startswith(f"{stale} is older than")
    parsed = []

    def fake_parse(project_dir: Path, target: str) -> Path:
        parsed.append((project_dir, target))
        return _manifest(project_dir, "target")

    monkeypatch.setattr(warehouse, "parse_dbt_project", fake_parse)
    with caplog.at_level(logging.WARNING, logger=warehouse.__name__):
        project = warehouse.prepare_dbt_project()
    assert parsed == [(dbt_copy, get_settings().warehouse.target)] and project.manifest_path == stale
    assert "running dbt parse now" in caplog.text and "older than" in caplog.text
    stale.unlink()
    assert "is missing" in warehouse.manifest_staleness(stale, dbt_copy)
