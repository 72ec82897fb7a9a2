"""The same key-management contract on all three backends: local keyring, AWS KMS (moto's KMS) and
Vault transit. No Vault binary can be installed here (no Debian package, none on PyPI), so Vault is a
small fake of the transit HTTP endpoints trialsynth calls, with real AES-256-GCM behind it."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trialsynth.security import (
    KeyCheckError,
    KeyDestroyedError,
    KeyId,
    KeyManager,
    KeyNotFoundError,
    KeyService,
    UnwrapError,
    check_keys,
    get_kms,
    read_header,
)
from trialsynth.security.aws_kms import AwsKms
from trialsynth.security.keyring import LocalKeyring
from trialsynth.security.vault_transit import VaultTransit
from trialsynth.settings import SecuritySettings, Settings

TOKEN = "test-root-token"


class FakeVaultTransit(BaseHTTPRequestHandler):
    """Transit endpoints as documented: keys CRUD/rotate/config/trim, encrypt, decrypt (AES-256-GCM)."""

    keys: dict[str, dict] = {}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, code: int, data: dict | None = None, errors: list[str] | None = None) -> None:
        body = json.dumps({"data": data} if errors is None else {"errors": errors}).encode() if data or errors else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str) -> None:
        if self.headers.get("X-Vault-Token") != TOKEN:
            return self._reply(403, errors=["permission denied"])
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        parts = self.path.split("?")[0].strip("/").split("/")  # v1 transit <op> [name] [sub]
        op, name, sub = parts[2], (parts[3] if len(parts) > 3 else None), (parts[4] if len(parts) > 4 else None)
        key = self.keys.get(name)
        if op == "keys" and name is None and method in ("LIST", "GET"):
            return self._reply(200, {"keys": sorted(self.keys)}) if self.keys else self._reply(404, errors=[])
        if op == "keys" and method == "POST" and sub is None:
            self.keys[name] = {"type": body.get("type", "aes256-gcm96"), "versions": {1: AESGCM.generate_key(256)},
                               "created": {1: int(time.time())}, "min_dec": 1, "min_avail": 0, "deletable": False}
            return self._reply(204)
        if key is None:
            return self._reply(404, errors=[])
        if op == "keys" and method == "GET":
            return self._reply(200, {"type": key["type"], "latest_version": max(key["versions"]),
                                     "min_decryption_version": key["min_dec"], "min_available_version": key["min_avail"],
                                     "keys": {str(n): key["created"][n] for n in key["versions"]}})
        if op == "keys" and method == "DELETE":
            if not key["deletable"]:
                return self._reply(400, errors=["deletion is not allowed for this key"])
            del self.keys[name]
            return self._reply(204)
        if sub == "rotate":
            n = max(key["versions"]) + 1
            key["versions"][n], key["created"][n] = AESGCM.generate_key(256), int(time.time())
            return self._reply(204)
        if sub == "config":
            key["min_dec"] = body.get("min_decryption_version", key["min_dec"])
            key["deletable"] = body.get("deletion_allowed", key["deletable"])
            return self._reply(204)
        if sub == "trim":
            floor = body["min_available_version"]
            if floor > key["min_dec"]:
                return self._reply(400, errors=["cannot set min available version above min decryption version"])
            key["min_avail"] = floor
            key["versions"] = {n: k for n, k in key["versions"].items() if n >= floor}
            return self._reply(204)
        aad = base64.b64decode(body.get("associated_data", ""))
        if op == "encrypt":
            n = body.get("key_version") or max(key["versions"])
            nonce = os.urandom(12)
            ct = AESGCM(key["versions"][n]).encrypt(nonce, base64.b64decode(body["plaintext"]), aad)
            return self._reply(200, {"ciphertext": f"vault:v{n}:" + base64.b64encode(nonce + ct).decode()})
        if op == "decrypt":
            _, version, payload = body["ciphertext"].split(":", 2)
            n, raw = int(version[1:]), base64.b64decode(payload)
            if n < key["min_dec"] or n not in key["versions"]:
                return self._reply(400, errors=["ciphertext or signature version is disallowed by policy (too old)"])
            try:
                plain = AESGCM(key["versions"][n]).decrypt(raw[:12], raw[12:], aad)
            except InvalidTag:
                return self._reply(400, errors=["cipher: message authentication failed"])
            return self._reply(200, {"plaintext": base64.b64encode(plain).decode()})
        return self._reply(405, errors=["unsupported"])

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_POST(self):  # noqa: N802
        self._route("POST")

    def do_DELETE(self):  # noqa: N802
        self._route("DELETE")

    def do_LIST(self):  # noqa: N802
        self._route("LIST")


@pytest.fixture
def vault_addr() -> Iterator[str]:
    FakeVaultTransit.keys = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeVaultTransit)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def aws_env(monkeypatch) -> Iterator[None]:
    from moto import mock_aws

    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        yield


@pytest.fixture(params=["local", "aws", "vault"])
def settings_for(request, tmp_path, monkeypatch) -> Settings:
    """Settings selecting each backend: the backend is chosen by settings alone."""
    if request.param == "aws":
        request.getfixturevalue("aws_env")
        security = SecuritySettings(kms="aws", aws_region="eu-west-1", segment_size=4096)
    elif request.param == "vault":
        monkeypatch.setenv("TS_TEST_VAULT_TOKEN", TOKEN)
        security = SecuritySettings(kms="vault", vault_addr=request.getfixturevalue("vault_addr"),
                                    vault_token_env="TS_TEST_VAULT_TOKEN", segment_size=4096)
    else:
        security = SecuritySettings(segment_size=4096)
    return Settings(data_dir=tmp_path / "data", security=security)


def test_settings_select_the_backend(settings_for):
    kms = get_kms(settings_for)
    expected = {"local": LocalKeyring, "aws": AwsKms, "vault": VaultTransit}[settings_for.security.kms]
    assert type(kms) is expected and kms.backend == settings_for.security.kms


def test_wrap_is_bound_to_key_and_context(settings_for):
    kms: KeyManager = get_kms(settings_for)
    v1 = kms.create_version("acme.eu_1")  # '.' and '_' survive every backend's naming rules
    assert kms.tenants() == ["acme.eu_1"] and kms.current("acme.eu_1") == v1 == KeyId("acme.eu_1", 1)
    dek = os.urandom(32)
    wrapped = kms.wrap(v1, dek, b"object-a")
    assert dek not in wrapped
    assert kms.unwrap(v1, wrapped, b"object-a") == dek
    with pytest.raises(UnwrapError, match="acme.eu_1/v1"):
        kms.unwrap(v1, wrapped, b"object-b")
    v2 = kms.create_version("acme.eu_1")
    assert v2 == KeyId("acme.eu_1", 2) and kms.current("acme.eu_1") == v2
    with pytest.raises(UnwrapError):
        kms.unwrap(v2, wrapped, b"object-a")  # wrapped by v1: v2 cannot open it
    with pytest.raises(KeyNotFoundError, match="acme.eu_1/v9"):
        kms.unwrap(KeyId("acme.eu_1", 9), wrapped, b"object-a")


def test_rotate_rewrap_destroy_end_to_end(settings_for):
    svc = KeyService(settings_for)
    if not svc.kms.creates_keys_on_first_use:
        with pytest.raises(KeyNotFoundError, match="keys rotate --tenant acme"):
            svc.encrypt_bytes(b"x", "acme", "lake/acme/x")
        svc.rotate("acme")  # managed KMSs: provisioning a tenant key is an explicit act
    src = settings_for.data_path.parent / "in.csv"
    src.write_bytes(os.urandom(9000))
    dst = settings_for.lake_dir / "acme" / "S1" / "quarantine" / "dm.bin"
    dst.parent.mkdir(parents=True)
    svc.encrypt_file(src, dst, "acme", svc.logical_path(dst))
    assert read_header(dst).kms == settings_for.security.kms
    body = dst.read_bytes()[read_header(dst).body_offset:]
    svc.rotate("acme")
    report = svc.rewrap("acme")
    assert report.rewrapped == [dst] and read_header(dst).key_id == KeyId("acme", 2)
    assert dst.read_bytes()[read_header(dst).body_offset:] == body
    assert [str(k) for k in check_keys(settings_for)] == ["acme/v1", "acme/v2"]
    assert svc.destroy("acme", up_to=1) == ([KeyId("acme", 1)], 0)
    with svc.open_decrypted(dst, "acme") as fh:
        assert fh.read() == src.read_bytes()
    destroyed, lost = svc.destroy("acme")
    assert destroyed == [KeyId("acme", 2)] and lost == 1
    with pytest.raises(KeyNotFoundError, match=rf"cannot decrypt {dst}: key acme/v2"):
        svc.open_decrypted(dst, "acme")
    assert dst.read_bytes()[read_header(dst).body_offset:] == body


def test_aws_destroy_disables_at_once_and_schedules_deletion(aws_env, tmp_path):
    kms = AwsKms(region="eu-west-1")
    key_id = kms.create_version("acme")
    wrapped = kms.wrap(key_id, os.urandom(32), b"ctx")
    kms.destroy("acme")
    meta = kms.client.describe_key(KeyId=kms.alias(key_id))["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and meta["DeletionDate"]
    with pytest.raises(KeyDestroyedError, match="acme/v1 was destroyed"):
        kms.unwrap(key_id, wrapped, b"ctx")


def test_aws_check_refuses_a_key_of_the_wrong_type(aws_env, tmp_path):
    kms = AwsKms(region="eu-west-1")
    rsa = kms.client.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    kms.client.create_alias(AliasName=kms.alias(KeyId("acme", 1)), TargetKeyId=rsa)
    settings = Settings(data_dir=tmp_path / "data", security=SecuritySettings(kms="aws", tenants=["acme"]))
    with pytest.raises(KeyCheckError, match=r"acme/v1 .*RSA_2048/SIGN_VERIFY key; trialsynth needs a SYMMETRIC_DEFAULT"):
        check_keys(settings, kms)


def test_managed_kms_configured_tenant_without_key_refuses_to_start(settings_for):
    settings = settings_for.model_copy(update={"security": settings_for.security.model_copy(update={"tenants": ["zeta"]})})
    if settings.security.kms == "local":
        assert check_keys(settings) == [KeyId("zeta", 1)]  # embedded default: created on first run
    else:
        with pytest.raises(KeyCheckError, match=r"configured tenant 'zeta'.*keys rotate --tenant zeta"):
            check_keys(settings)


def test_vault_without_token_is_refused(tmp_path, vault_addr, monkeypatch):
    monkeypatch.delenv("TS_TEST_VAULT_TOKEN", raising=False)
    settings = Settings(data_dir=tmp_path / "data", security=SecuritySettings(
        kms="vault", vault_addr=vault_addr, vault_token_env="TS_TEST_VAULT_TOKEN"))
    with pytest.raises(KeyCheckError, match="no Vault token"):
        get_kms(settings)
