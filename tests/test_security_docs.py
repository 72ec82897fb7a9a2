"""docs/security.md cannot drift from the code: its facts table is compared with what real encrypted
objects say about themselves (raw-zone files, a model artifact as the registry stores it, an evidence
pack), and a coverage row claiming "encrypted" must point at a writer that calls trialsynth.security."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trialsynth.artifacts import save_model, write_encrypted_pack
from trialsynth.registry import ModelRegistry
from trialsynth.security import KeyService, keyring_path, read_header
from trialsynth.security.envelope import MAGIC
from trialsynth.settings import PROJECT_ROOT, Settings

DOC = PROJECT_ROOT / "docs" / "security.md"


def _table(name: str) -> list[list[str]]:
    text = DOC.read_text()
    match = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert match, f"docs/security.md lost its {name} table"
    rows = [[c.strip().strip("`") for c in line.strip().strip("|").split("|")] for line in match[1].splitlines()]
    return [r for r in rows[2:] if r and r[0]]  # skip header and --- line


@pytest.fixture(scope="module")
def facts() -> dict[str, str]:
    return {row[0]: row[1] for row in _table("security-facts")}


@pytest.fixture
def encrypted(tmp_path: Path) -> tuple[KeyService, list[Path]]:
    """Two real objects in the raw zone: one under the first key version, one after a rotate."""
    svc = KeyService(Settings(data_dir=tmp_path / "data"))
    paths = []
    for name in ("dm.csv", "ae.csv"):
        src = tmp_path / name
        src.write_bytes(os.urandom(1_500_000))  # more than one default segment
        dst = svc.settings.raw_dir / "acme" / "S1" / "d1" / "v1" / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        svc.encrypt_file(src, dst, "acme", svc.logical_path(dst))
        paths.append(dst)
        if name == "dm.csv":
            svc.rotate("acme")
    return svc, paths


def _key_id_regex(pattern: str) -> str:
    return re.escape(pattern).replace(re.escape("<tenant>"), "(?P<tenant>[^/]+)").replace(re.escape("<N>"), r"(?P<n>\d+)")


def test_algorithm_key_id_and_versions_match_the_doc(facts, encrypted):
    svc, (first, second) = encrypted
    h1, h2 = read_header(first), read_header(second)
    assert h1.algorithm == h2.algorithm == facts["algorithm"]
    assert first.read_bytes()[: len(MAGIC)].decode() == facts["envelope magic"]
    assert h1.format_version == int(facts["envelope format version"])
    m1 = re.fullmatch(_key_id_regex(facts["key id"]), str(h1.key_id))
    m2 = re.fullmatch(_key_id_regex(facts["key id"]), str(h2.key_id))
    assert m1 and m2 and m1["tenant"] == m2["tenant"] == "acme"
    assert int(m1["n"]) == int(facts["first key version"])
    assert int(m2["n"]) == int(facts["version after one rotate"])
    assert h1.segment_size == int(facts["default segment size (bytes)"])
    assert len(h1.nonce_prefix) == int(facts["nonce prefix bytes"])


def test_data_key_and_tag_sizes_match_the_doc(facts, encrypted):
    svc, (first, second) = encrypted
    h1, h2 = read_header(first), read_header(second)
    key = svc.kms.unwrap(h1.key_id, h1.wrapped_key, h1.wrap_context)
    assert 8 * len(key) == int(facts["data key bits"])
    assert facts["data key"] == "random per object" and h1.wrapped_key != h2.wrapped_key
    segments = -(-1_500_000 // h1.segment_size)
    assert first.stat().st_size - h1.body_offset - 1_500_000 == segments * int(facts["tag bytes per segment"])


def test_key_file_locations_match_the_doc(facts, encrypted):
    svc, _ = encrypted
    ring = keyring_path(svc.settings)
    assert oct(stat.S_IMODE(ring.stat().st_mode))[2:].zfill(4) == facts["keyring file mode"]
    expected_ring = facts["keyring default path"].replace("<data dir's parent>", str(svc.settings.data_path.parent))
    assert ring == Path(expected_ring)
    canary = facts["canary path"].replace("<lake>", str(svc.settings.lake_dir)).replace("<tenant>", "acme")
    for version in (1, 2):
        path = Path(canary.replace("<N>", str(version)))
        assert path.is_file() and read_header(path).algorithm == facts["algorithm"]


def test_coverage_rows_claiming_encryption_point_at_code_that_encrypts():
    rows = _table("security-coverage")
    assert {r[0] for r in rows} >= {"raw zone (sponsor's original bytes)", "quarantine files (rejected raw text)",
                                    "model artifacts (pickles)", "evidence packs"}
    for what, _where, writer, encrypted in rows:
        if encrypted.startswith("yes"):
            source = (PROJECT_ROOT / writer).read_text()
            assert "trialsynth.security" in source or writer.startswith("trialsynth/security/"), (
                f"docs/security.md says {what!r} is encrypted, but {writer} does not use trialsynth.security"
            )


@pytest.fixture
def product_objects(tmp_path: Path) -> tuple[KeyService, dict[str, object], dict[str, Path]]:
    """A model artifact registered under the first key version and an evidence pack written after one
    rotate, both by the code the assets call (the embedded lake store)."""
    from models.evidence.pack import build_evidence_pack

    keys = KeyService(Settings(data_dir=tmp_path / "data"))
    stored = save_model({"weights": [0.5]}, "acme/S1/synthesis/models/run-1.pkl", "acme", keys)
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'registry.sqlite'}", keys=keys)
    record = registry.get(registry.register(kind="synthesizer", name="acme/S1/copula", trained_by="docs test",
                                            training_data_sha256="0" * 64, artifact_path=stored.uri))
    keys.rotate("acme")
    rng = np.random.default_rng(0)
    frames = [pd.DataFrame({"AGE": rng.normal(50, 9, n), "SEX": rng.choice(["F", "M"], n)}) for n in (80, 80, 40)]
    pack = build_evidence_pack(*frames, ["SEX"], run_id="run-1", n_bootstrap=3)
    written = write_encrypted_pack(pack, "acme/S1/evidence/run-1", "acme", keys)
    files = {"model artifact": Path(stored.location), **{f"evidence {k}": Path(s.location) for k, s in written.items()}}
    return keys, {"record": record, "uri": stored.uri}, files


def test_model_artifacts_and_evidence_packs_carry_what_the_doc_says(facts, product_objects):
    keys, registered, files = product_objects
    pattern = _key_id_regex(facts["key id"])
    for what, path in files.items():
        header = read_header(path)
        match = re.fullmatch(pattern, str(header.key_id))
        expected = facts["first key version"] if what == "model artifact" else facts["version after one rotate"]
        assert header.algorithm == facts["algorithm"], what
        assert match and match["tenant"] == "acme" and int(match["n"]) == int(expected), (what, header.key_id)
        key = path.relative_to(keys.settings.lake_dir).as_posix()
        assert header.aad == facts["model artifact / evidence pack AAD"].replace("<key>", key), what
    record = registered["record"]
    key = files["model artifact"].relative_to(keys.settings.lake_dir).as_posix()
    assert record.artifact_uri == registered["uri"] == facts["registry artifact URI"].replace("<key>", key)
    assert record.artifact_algorithm == facts["algorithm"]
    assert re.fullmatch(pattern, record.artifact_key_id)


def test_the_assets_store_models_and_packs_only_through_the_encrypting_functions():
    """The coverage rows for model artifacts and evidence packs name their callers: those must call
    trialsynth.artifacts, and no longer write pickles or packs themselves."""
    synthesis = (PROJECT_ROOT / "assets" / "synthesis.py").read_text()
    imputation = (PROJECT_ROOT / "assets" / "imputation.py").read_text()
    assert "save_model(" in synthesis and "save_model(" in imputation and "write_encrypted_pack(" in synthesis
    for name, source in (("assets/synthesis.py", synthesis), ("assets/imputation.py", imputation)):
        for plain_writer in ("model.save(", "pickle.dump", "write_pack(", "BaseSynthesizer.load("):
            assert plain_writer not in source, f"{name} writes or reads a model or pack without encryption: {plain_writer}"
