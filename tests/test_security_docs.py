"""docs/security.md cannot drift from the code: its facts table is compared with what real encrypted
objects say about themselves, and a coverage row claiming "encrypted" must point at a writer that
calls trialsynth.security."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

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
