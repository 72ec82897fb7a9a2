"""The container images, checked without Docker (none on this machine): multi-stage builds on a
slim Python 3.11, a non-root user and a HEALTHCHECK in the final stage, no compilers or secrets in
it, the pins the project uses; and the Superset entry point script, run here."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

from trialsynth.settings import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "infra" / "docker"
IMAGES = {"main": DOCKER / "Dockerfile", "superset": DOCKER / "Dockerfile.superset"}
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|gfortran)\b")
SECRETISH = re.compile(r"(PASSWORD|SECRET|TOKEN|PRIVATE|ACCESS_KEY|CREDENTIAL)", re.I)


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]]  # (INSTRUCTION, rest), continuation lines joined

    def lines(self, instruction: str) -> list[str]:
        return [rest for ins, rest in self.instructions if ins == instruction]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (a small reader: no variables in FROM
    other than ARGs declared before the first stage)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args, stages = {}, []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            image, _, name = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.strip())
            stages.append(Stage(image, name.strip(), []))
        elif stages:
            stages[-1].instructions.append((instruction, rest))
        elif instruction == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value
    return args, stages


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_final_stage_is_slim_non_root_healthchecked_and_without_compilers(image):
    _, stages = parse(IMAGES[image])
    assert len(stages) >= 2, "multi-stage: dependencies are built in a stage that is thrown away"
    build, final = stages[0], stages[-1]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final.base), final.base
    assert any(COMPILERS.search(r) for r in build.lines("RUN")), "the build stage is where compilers live"
    assert not any(COMPILERS.search(r) for r in final.lines("RUN")), "no compiler in the final stage"
    assert all(f"--from={build.name}" in c for c in final.lines("COPY") if "--from" in c)
    users = final.lines("USER")
    assert users and re.fullmatch(r"\d+:\d+", users[-1]) and not users[-1].startswith("0")
    position = {ins: i for i, (ins, _) in enumerate(final.instructions)}
    assert position["USER"] > max(i for i, (ins, _) in enumerate(final.instructions) if ins == "RUN")
    assert final.lines("HEALTHCHECK")


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_no_secret_is_built_into_an_image(image):
    args, stages = parse(IMAGES[image])
    declared = list(args) + [re.split(r"[= ]", r)[0] for s in stages for r in s.lines("ARG") + s.lines("ENV")]
    assert not [d for d in declared if SECRETISH.search(d)]
    copied = " ".join(c for s in stages for c in s.lines("COPY"))
    assert not re.search(r"trialsynth\.yaml|\.env\b|\.pem\b|_password|secret_key|\.superset_home", copied)
    assert SECRETISH.search("DB_PASSWORD") and SECRETISH.search("AWS_SECRET_ACCESS_KEY")  # the check can fail


def test_main_image_pins_torch_cpu_and_the_dagster_release_line():
    text = IMAGES["main"].read_text()
    assert "torch==2.13.0" in text and "torch.version.cuda is None" in text
    deps = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    integration = next(d.split("==")[1] for d in deps if d.startswith("dagster-postgres=="))
    assert re.search(rf"dagster-k8s=={re.escape(integration)}\b", text)
    assert "torch==2.13.0" in (PROJECT_ROOT / "Makefile").read_text()


def test_superset_image_pins_match_the_local_install():
    text = IMAGES["superset"].read_text()
    install = (PROJECT_ROOT / "infra" / "superset" / "install.sh").read_text()
    for pin in re.findall(r'"?((?:apache-superset|flask-caching)==[\d.]+)"?', install):
        assert pin in text
    assert f"ARG DUCKDB_VERSION={version('duckdb')}" in text, "Superset reads DuckDB files the project writes"
    assert "SUPERSET_CONFIG_PATH=/app/superset_config/superset_config.py" in text


def test_dockerignore_keeps_state_and_secrets_out_of_the_build_context():
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    assert {"**/.venv", ".dagster_home", ".superset_home", "data/lake", "data/raw", "data/landing",
            "trialsynth.yaml", ".env", "dbt_project/target"} <= ignored


def test_superset_entrypoint_refuses_an_unknown_mode_and_needs_the_admin_secret():
    script = str(DOCKER / "superset-entrypoint.sh")
    unknown = subprocess.run(["sh", script, "bogus"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "usage" in unknown.stderr
    env = {k: v for k, v in os.environ.items() if k != "SUPERSET_ADMIN_PASSWORD"}
    init = subprocess.run(["sh", script, "init"], capture_output=True, text=True, env=env)
    assert init.returncode != 0 and "SUPERSET_ADMIN_PASSWORD" in init.stderr
