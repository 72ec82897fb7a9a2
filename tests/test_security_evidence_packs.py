"""Evidence packs encrypted at rest (issue 12): the JSON and the HTML report a run writes are envelope
objects of the tenant's key; the API, the signed report link and the CLI serve them through
``read_evidence``; rewrap keeps them readable, tampering and crypto-shredding do not return garbage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.evidence.pack import EvidencePack, build_evidence_pack
from tests.api_support import auth, client
from trialsynth.api.report_links import LINK_SECRET_ENV, report_link
from trialsynth.artifacts import read_evidence, write_encrypted_pack
from trialsynth.cli import main
from trialsynth.security import DecryptionError, KeyDestroyedError, KeyService, read_header
from trialsynth.tenancy import TenantPathError

RUN = "run-enc-1"


def _cohort(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"AGE": rng.normal(50, 10, n), "SEX": rng.choice(["F", "M"], n)})


@pytest.fixture(scope="module")
def pack() -> EvidencePack:
    return build_evidence_pack(_cohort(120, 0), _cohort(120, 1), _cohort(60, 2), ["SEX"], run_id=RUN,
                               context={"tenant": "acme", "study": "S1", "marker": "PLAINTEXT-PACK-91c2"},
                               n_bootstrap=5)


@pytest.fixture
def written(settings, pack) -> tuple[KeyService, dict[str, Path]]:
    """The pack stored on the local lake store (the embedded default); kind -> its file."""
    keys = KeyService(settings)
    stored = write_encrypted_pack(pack, f"acme/S1/evidence/{RUN}", "acme", keys)
    assert {s.uri for s in stored.values()} >= {f"lake:acme/S1/evidence/{RUN}/evidence.json",
                                                 f"lake:acme/S1/evidence/{RUN}/report.html"}
    return keys, {kind: Path(s.location) for kind, s in stored.items()}


def test_pack_files_are_encrypted_with_the_tenants_key_and_read_back_exactly(settings, pack, written):
    keys, paths = written
    assert {"json", "html"} <= set(paths)
    for kind, path in paths.items():
        blob = path.read_bytes()
        assert blob.startswith(b"TSENC") and b"PLAINTEXT-PACK-91c2" not in blob, kind
        header = read_header(path)
        assert (str(header.key_id), header.algorithm, header.tenant) == ("acme/v1", "AES-256-GCM", "acme")
    assert json.loads(read_evidence(paths["json"], "acme", keys)) == pack.to_dict()
    html = read_evidence(paths["html"], "acme", keys).decode()
    assert "<html" in html.lower() and "PLAINTEXT-PACK-91c2" in html  # the report, with the run's context
    assert not list(paths["json"].parent.glob(".*")), "a temporary file was left in the pack folder"


def test_another_tenant_cannot_read_the_pack(settings, written):
    keys, paths = written
    with pytest.raises(TenantPathError):
        read_evidence(paths["json"], "beta", keys)
    planted = settings.lake_dir / "beta" / "S1" / "evidence" / RUN / "evidence.json"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(paths["json"].read_bytes())  # acme's ciphertext copied into beta's folder
    with pytest.raises(DecryptionError, match=r"belongs to tenant 'acme' \(key acme/v1\), not 'beta'"):
        read_evidence(planted, "beta", keys)


def test_a_flipped_bit_fails_naming_the_pack_file_and_the_key(written):
    keys, paths = written
    blob = bytearray(paths["html"].read_bytes())
    blob[-3] ^= 0x40
    paths["html"].write_bytes(bytes(blob))
    with pytest.raises(DecryptionError, match=rf"cannot decrypt {paths['html']}: .*tampered.*key acme/v1"):
        read_evidence(paths["html"], "acme", keys)


def test_rewrap_keeps_the_pack_readable_and_destroy_shreds_it(settings, pack, written):
    keys, paths = written
    keys.rotate("acme")
    assert main(["keys", "rewrap", "--tenant", "acme"]) == 0
    assert read_header(paths["json"]).key_id.version == 2
    assert json.loads(read_evidence(paths["json"], "acme", keys))["run_id"] == RUN
    assert main(["keys", "destroy", "--tenant", "acme", "--yes"]) == 0
    ciphertext = paths["json"].read_bytes()
    with pytest.raises(KeyDestroyedError, match=rf"cannot decrypt {paths['json']}: key acme/v2 was destroyed"):
        read_evidence(paths["json"], "acme", keys)
    assert paths["json"].read_bytes() == ciphertext


def test_cli_and_api_serve_the_decrypted_pack(settings, written, capsys, monkeypatch):
    keys, paths = written
    assert main(["evidence", "show", RUN, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == RUN
    assert main(["evidence", "show", RUN]) == 0
    assert f"Evidence pack {RUN}" in capsys.readouterr().out

    api = client(settings, check_tenant_keys=False)
    response = api.get(f"/evidence/v1/runs/{RUN}", headers=auth(settings, "acme"))
    assert response.status_code == 200 and response.json()["run_id"] == RUN
    html = api.get(f"/evidence/v1/runs/{RUN}?format=html", headers=auth(settings, "acme"))
    assert html.status_code == 200 and html.content == read_evidence(paths["html"], "acme", keys)
    assert api.get(f"/evidence/v1/runs/{RUN}", headers=auth(settings, "beta")).status_code == 404
    monkeypatch.delenv(LINK_SECRET_ENV, raising=False)
    link = report_link(settings, "acme", "S1", RUN).removeprefix(settings.api.public_url)
    assert api.get(link).content == html.content  # the Dagster page's signed link
