"""Shared fixtures: every test gets its own data dir and DAGSTER_HOME, never the project's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stack_fixtures import clickhouse_endpoint, seaweedfs, stack  # noqa: F401  (session fixtures: the stack's services)
from trialsynth.settings import PROJECT_ROOT, get_settings

CDISC_SDTM = PROJECT_ROOT.parent / "shared" / "data" / "cdiscpilot01" / "sdtm"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRIALSYNTH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRIALSYNTH_DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))  # it wins over the settings when set
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def cdisc_sdtm() -> Path:
    if not CDISC_SDTM.is_dir():
        pytest.skip(f"the CDISC pilot is not available at {CDISC_SDTM} (../shared is absent on this machine)")
    return CDISC_SDTM


def make_drop(landing: Path, tenant: str, study: str, drop_id: str, files: dict[str, bytes], ready: bool = True) -> Path:
    """Write a drop's files, then its _READY marker last (as an uploader must)."""
    path = landing / tenant / study / drop_id
    path.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    if ready:
        (path / "_READY").touch()
    return path


FAST_STUDY_YAML = """
seed: 3
imputation: {candidates: [mean, knn], repeats: 1, rate: 0.2}
synthesis: {synthesizer: copula, n: 80, allow_unapproved: true}
"""


def fast_study_config(directory: Path, study: str, text: str = FAST_STUDY_YAML) -> Path:
    """A study config that keeps pipeline tests quick (two cheap imputers, one repeat, copula)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{study}.yaml").write_text(text)
    return directory
