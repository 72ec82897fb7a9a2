"""The startup gate (issue 12, "refuse to start"): Definitions load and the CLI call
``trialsynth.security.check_keys`` before anything runs; a fresh embedded install still starts.

The API calls it in ``trialsynth.api.app.create_app`` (tested with the API).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from trialsynth.cli import main
from trialsynth.security import check_keys, keyring_path
from trialsynth.settings import PROJECT_ROOT, get_settings


@pytest.fixture
def acme_configured(settings, monkeypatch):
    """A data dir whose configured tenant acme has a key and a canary (what a first start leaves)."""
    monkeypatch.setenv("TRIALSYNTH_SECURITY__TENANTS", '["acme"]')
    get_settings.cache_clear()
    check_keys(get_settings())
    return get_settings()


def _replace_acme_key(settings) -> None:
    """The keyring restored from the wrong backup: acme/v1 is a valid AES-256 key, but not the one
    that encrypted this data dir's canary."""
    path = keyring_path(settings)
    ring = json.loads(path.read_text())
    ring["tenants"]["acme"]["1"]["key"] = base64.b64encode(os.urandom(32)).decode()
    path.write_text(json.dumps(ring))


def test_fresh_embedded_install_starts_and_makes_no_key_file_until_needed(settings, capsys) -> None:
    assert not keyring_path(settings).exists()
    assert main(["registry", "list"]) == 0, capsys.readouterr().err
    assert "key" not in capsys.readouterr().err


def test_first_start_with_a_configured_tenant_creates_a_0600_keyring(acme_configured) -> None:
    path = keyring_path(acme_configured)
    assert path.exists() and path.stat().st_mode & 0o777 == 0o600


def test_cli_refuses_to_start_with_a_wrong_key_naming_it(acme_configured, capsys) -> None:
    _replace_acme_key(acme_configured)
    assert main(["registry", "list"]) == 2
    err = capsys.readouterr().err
    assert "acme/v1" in err and "canary" in err


def test_keys_commands_still_run_to_diagnose_and_fix(acme_configured, capsys) -> None:
    _replace_acme_key(acme_configured)
    assert main(["keys", "status"]) == 0
    assert "acme" in capsys.readouterr().out


def test_definitions_load_refuses_a_wrong_key(acme_configured) -> None:
    _replace_acme_key(acme_configured)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", "import orchestration.definitions"], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "KeyCheckError" in done.stderr and "acme/v1" in done.stderr
