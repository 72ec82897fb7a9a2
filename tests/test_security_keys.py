"""Key lifecycle with the embedded local keyring, through the service and the ``trialsynth keys`` CLI:
keyring file safety, rotation, rewrap without touching the data, the startup check (missing key,
wrong length, wrong key material), and crypto-shredding."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from trialsynth.artifacts import read_evidence, save_model, write_encrypted
from trialsynth.cli import main
from trialsynth.hashing import sha256_file
from trialsynth.registry import ModelRegistry
from trialsynth.security import (
    KeyCheckError,
    KeyDestroyedError,
    KeyId,
    KeyService,
    check_keys,
    keyring_path,
    read_header,
    stable_sha256,
)
from trialsynth.security.keyring import LocalKeyring
from trialsynth.settings import SecuritySettings, Settings


def _service(tmp_path: Path, **security) -> KeyService:
    return KeyService(Settings(data_dir=tmp_path / "data", security=SecuritySettings(**security)))


def _encrypt(svc: KeyService, tenant: str, name: str, data: bytes) -> Path:
    src = svc.settings.data_path.parent / f"in-{name}"
    src.write_bytes(data)
    dst = svc.settings.raw_dir / tenant / "S1" / "d1" / "v1" / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    svc.encrypt_file(src, dst, tenant, svc.logical_path(dst))
    return dst


def _read(svc: KeyService, path: Path, tenant: str = "acme") -> bytes:
    with svc.open_decrypted(path, tenant) as fh:
        return fh.read()


def _set_key(ring: Path, key_id: KeyId, raw: bytes) -> None:
    data = json.loads(ring.read_text())
    data["tenants"][key_id.tenant][str(key_id.version)]["key"] = base64.b64encode(raw).decode()
    ring.write_text(json.dumps(data))


# -- the keyring file ---------------------------------------------------------------------------

def test_keyring_created_0600_on_first_use_outside_the_data_dir(tmp_path):
    svc = _service(tmp_path)
    ring = keyring_path(svc.settings)
    assert not ring.exists()
    _encrypt(svc, "acme", "dm.csv", b"rows")
    assert stat.S_IMODE(ring.stat().st_mode) == 0o600
    assert stat.S_IMODE(ring.parent.stat().st_mode) == 0o700
    assert not ring.is_relative_to(svc.settings.data_path)
    assert ".trialsynth-keys/" in (Path(__file__).parents[1] / ".gitignore").read_text()


def test_keyring_with_loose_permissions_is_refused(tmp_path):
    svc = _service(tmp_path)
    _encrypt(svc, "acme", "dm.csv", b"rows")
    os.chmod(svc.kms.path, 0o644)
    with pytest.raises(KeyCheckError, match=r"has mode -rw-r--r--.*chmod 600"):
        check_keys(svc.settings)
    with pytest.raises(KeyCheckError, match="chmod 600"):
        svc.encrypt_bytes(b"x", "acme", "lake/acme/x")


def test_keyring_path_from_settings(tmp_path):
    svc = _service(tmp_path, keyring_path=tmp_path / "elsewhere" / "ring.json")
    assert isinstance(svc.kms, LocalKeyring) and svc.kms.path == tmp_path / "elsewhere" / "ring.json"


# -- rotation and rewrap ------------------------------------------------------------------------

def test_rotate_new_writes_use_new_version_old_objects_stay_readable(tmp_path):
    svc = _service(tmp_path)
    old = _encrypt(svc, "acme", "dm.csv", b"old rows")
    assert svc.rotate("acme") == KeyId("acme", 2)
    new = _encrypt(svc, "acme", "ae.csv", b"new rows")
    assert read_header(old).key_id == KeyId("acme", 1)
    assert read_header(new).key_id == KeyId("acme", 2)
    assert _read(svc, old) == b"old rows" and _read(svc, new) == b"new rows"
    other = _encrypt(svc, "beta", "dm.csv", b"beta rows")
    assert read_header(other).key_id == KeyId("beta", 1)  # versions are per tenant


def test_rewrap_moves_every_object_to_newest_version_without_touching_the_body(tmp_path):
    svc = _service(tmp_path, segment_size=4096)
    paths = [_encrypt(svc, "acme", f"f{i}.csv", os.urandom(10_000 + i)) for i in range(3)]
    os.chmod(paths[0], 0o444)  # raw-zone files are read-only
    bodies = {p: p.read_bytes()[read_header(p).body_offset:] for p in paths}
    digests = {p: (stable_sha256(p), sha256_file(p)) for p in paths}
    fixed = {p: read_header(p).fixed_bytes for p in paths}
    plain = {p: _read(svc, p) for p in paths}
    svc.rotate("acme")
    svc.rotate("acme")
    report = svc.rewrap("acme")
    assert sorted(report.rewrapped) == sorted(paths) and report.failed == [] and report.key_id == KeyId("acme", 3)
    for p in paths:
        header = read_header(p)
        assert header.key_id == KeyId("acme", 3)
        assert p.read_bytes()[header.body_offset:] == bodies[p], "rewrap must not change the ciphertext body"
        assert header.fixed_bytes == fixed[p]
        assert stable_sha256(p) == digests[p][0] and sha256_file(p) != digests[p][1]
        assert _read(svc, p) == plain[p]
    assert stat.S_IMODE(paths[0].stat().st_mode) == 0o444
    svc.destroy("acme", up_to=2)  # nothing depends on v1/v2 any more
    assert all(_read(svc, p) == plain[p] for p in paths)
    assert svc.rewrap("acme").already_current == 3


# -- startup check ------------------------------------------------------------------------------

def test_check_creates_configured_tenant_key_on_first_run_then_passes(tmp_path):
    svc = _service(tmp_path, tenants=["acme"])
    assert check_keys(svc.settings) == [KeyId("acme", 1)]
    assert svc.canary_path(KeyId("acme", 1)).is_file()
    assert check_keys(svc.settings) == [KeyId("acme", 1)]


def test_check_refuses_when_the_keyring_is_lost(tmp_path):
    svc = _service(tmp_path, tenants=["acme"])
    _encrypt(svc, "acme", "dm.csv", b"rows")
    svc.kms.path.unlink()
    with pytest.raises(KeyCheckError, match=r"key acme/v1 does not exist in local keyring.*"
                                            r"holds objects encrypted with acme/v1.*restore that key"):
        check_keys(svc.settings)
    assert not svc.kms.path.exists(), "the check must not paper over a lost keyring by creating a new key"


def test_check_refuses_a_key_of_the_wrong_length(tmp_path):
    svc = _service(tmp_path)
    _encrypt(svc, "acme", "dm.csv", b"rows")
    _set_key(svc.kms.path, KeyId("acme", 1), os.urandom(16))
    with pytest.raises(KeyCheckError, match=r"key acme/v1 in local keyring .* is 16 bytes; AES-256 needs 32"):
        check_keys(svc.settings)


def test_check_refuses_a_keyring_that_cannot_open_the_canary(tmp_path):
    svc = _service(tmp_path)
    _encrypt(svc, "acme", "dm.csv", b"rows")
    _set_key(svc.kms.path, KeyId("acme", 1), os.urandom(32))  # a keyring restored from the wrong backup
    with pytest.raises(KeyCheckError, match=r"key acme/v1 in local keyring .* cannot decrypt its canary .*v1.canary"):
        check_keys(svc.settings)


# -- crypto-shredding ---------------------------------------------------------------------------

def test_destroying_a_tenant_makes_all_its_objects_unreadable_and_keeps_others(tmp_path):
    """Raw-zone files, a model artifact as the registry stores it and an evidence pack file alike."""
    svc = _service(tmp_path)
    a1 = _encrypt(svc, "acme", "dm.csv", b"acme v1")
    model = save_model({"weights": [1.0]}, "acme/S1/synthesis/models/r1.pkl", "acme", svc)
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'registry.sqlite'}", keys=svc)
    model_id = registry.register(kind="synthesizer", name="acme/S1/copula", trained_by="t", training_data_sha256="0" * 64,
                                 artifact_path=model.uri)
    svc.rotate("acme")
    a2 = _encrypt(svc, "acme", "ae.csv", b"acme v2")
    pack = write_encrypted(b'{"run_id": "r1"}', "acme/S1/evidence/r1/evidence.json", "acme", svc)
    b1 = _encrypt(svc, "beta", "dm.csv", b"beta v1")
    objects = [a1, a2, Path(model.location), Path(pack.location)]
    before = {p: p.read_bytes() for p in objects}
    destroyed, lost = svc.destroy("acme")
    assert destroyed == [KeyId("acme", 1), KeyId("acme", 2)] and lost == 4
    for p in (a1, a2):
        with pytest.raises(KeyDestroyedError, match=rf"cannot decrypt {p}: key acme/v\d was destroyed"):
            _read(svc, p)
    with pytest.raises(KeyDestroyedError, match=rf"cannot decrypt {model.location}: key acme/v1 was destroyed"):
        registry.load_model(model_id)
    with pytest.raises(KeyDestroyedError, match=rf"cannot decrypt {pack.location}: key acme/v2 was destroyed"):
        read_evidence(pack.uri, "acme", svc)
    assert all(p.read_bytes() == before[p] for p in objects)
    entries = json.loads(svc.kms.path.read_text())["tenants"]["acme"].values()
    assert all("key" not in e and e["state"] == "destroyed" for e in entries), "key bytes must be gone"
    assert _read(svc, b1, "beta") == b"beta v1"
    with pytest.raises(KeyDestroyedError, match="keys rotate --tenant acme"):
        svc.encrypt_bytes(b"new", "acme", "lake/acme/x")  # no silent new key after a shred
    assert check_keys(svc.settings) == [KeyId("beta", 1)]  # the shredded tenant's canaries are gone too


# -- CLI ----------------------------------------------------------------------------------------

def test_cli_rotate_rewrap_status_destroy(settings, capsys):
    svc = KeyService(settings)
    path = _encrypt(svc, "acme", "dm.csv", b"rows")
    assert main(["keys", "rotate", "--tenant", "acme"]) == 0
    assert "created acme/v2" in capsys.readouterr().out
    assert main(["keys", "status"]) == 0
    out = capsys.readouterr().out
    assert "tenant acme: current acme/v2" in out and "acme/v1  active  objects: 1" in out
    assert main(["keys", "rewrap", "--tenant", "acme"]) == 0
    assert "rewrapped 1 objects to acme/v2" in capsys.readouterr().out
    assert main(["keys", "check"]) == 0
    assert "keys ok: acme/v1, acme/v2" in capsys.readouterr().out
    assert main(["keys", "destroy", "--tenant", "acme"]) == 2  # --yes is required
    assert _read(svc, path) == b"rows"
    assert main(["keys", "destroy", "--tenant", "acme", "--version", "1", "--yes"]) == 0
    assert "destroyed acme/v1; 0 encrypted objects" in capsys.readouterr().out
    assert main(["keys", "destroy", "--tenant", "acme", "--yes"]) == 0
    assert "destroyed acme/v2; 1 encrypted objects of acme are now unreadable" in capsys.readouterr().out
    assert main(["keys", "status", "--tenant", "acme"]) == 0
    assert "current none" in capsys.readouterr().out


def test_cli_check_fails_with_the_key_named(settings, capsys):
    svc = KeyService(settings)
    _encrypt(svc, "acme", "dm.csv", b"rows")
    os.chmod(svc.kms.path, 0o640)
    assert main(["keys", "check"]) == 2
    assert "chmod 600" in capsys.readouterr().err


def test_cli_reports_objects_it_cannot_rewrap_and_keeps_going(settings, capsys):
    svc = KeyService(settings)
    good = _encrypt(svc, "acme", "dm.csv", b"rows")
    bad = _encrypt(svc, "acme", "ae.csv", b"rows")
    bad.write_bytes(bad.read_bytes()[:20])  # header cut short
    svc.rotate("acme")
    assert main(["keys", "rewrap", "--tenant", "acme"]) == 1
    out = capsys.readouterr().out
    assert "rewrapped 1 objects to acme/v2" in out and f"FAILED {bad}: " in out and "truncated or corrupt" in out
    assert read_header(good).key_id == KeyId("acme", 2) and len(bad.read_bytes()) == 20
    assert main(["keys", "status", "--tenant", "acme"]) == 0
    assert f"CORRUPT HEADER {bad}" in capsys.readouterr().out
