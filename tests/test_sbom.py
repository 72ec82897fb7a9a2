"""`make sbom` writes a CycloneDX SBOM of the Python environment that lists what is really
installed, the project's pinned dependencies (dagster 1.13.27, torch 2.13.0, ...) among them."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from importlib.metadata import distributions
from pathlib import Path

import pytest

from trialsynth.settings import PROJECT_ROOT


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def sbom(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("sbom") / "sbom.cdx.json"
    # -o: never reinstall the venv from here; schema validation (slow, 15 s) stays in `make sbom` itself.
    subprocess.run(["make", "-s", "-o", ".venv/.installed", "sbom", f"SBOM={out}", "SBOM_VALIDATE=--no-validate"],
                   cwd=PROJECT_ROOT, check=True, capture_output=True, text=True, timeout=120)
    return json.loads(Path(out).read_text())


def _pins() -> dict[str, str]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    pins = {_norm(name): pinned for name, pinned in (d.split("==") for d in project["dependencies"] if "==" in d)}
    make_torch = re.search(r"torch==([\d.]+)", (PROJECT_ROOT / "Makefile").read_text()).group(1)
    return {**pins, "torch": make_torch}


def test_sbom_is_cyclonedx_for_the_project(sbom):
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"].startswith("1.")
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert sbom["metadata"]["component"]["name"] == project["name"]


def test_sbom_lists_every_pinned_dependency_at_its_pinned_version(sbom):
    listed = {_norm(c["name"]): c for c in sbom["components"]}
    pins = _pins()
    assert {"dagster", "dagster-webserver", "dagster-postgres", "dagster-dbt", "torch"} <= set(pins)
    for name, pinned in pins.items():
        assert name in listed, f"{name} missing from the SBOM"
        assert listed[name]["version"].split("+")[0] == pinned, (name, listed[name]["version"], pinned)
        assert listed[name]["purl"].startswith(f"pkg:pypi/{name}@")


def test_sbom_versions_are_the_installed_ones(sbom):
    installed = {_norm(d.metadata["Name"]): d.version for d in distributions()}
    listed = {_norm(c["name"]): c["version"] for c in sbom["components"]}
    assert len(listed) >= 100
    wrong = {n: (v, installed[n]) for n, v in listed.items() if n in installed and installed[n] != v}
    assert not wrong
    assert set(listed) <= set(installed) | {"trialsynth"}
