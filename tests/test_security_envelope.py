"""Envelope encryption of objects: round trips, binding to tenant and path, and every bad input the
issue names (wrong key, truncation, flipped tag bit, unknown key id, destroyed version) failing with
a message naming the object and the key, never returning garbage, never touching the ciphertext."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from trialsynth.security import (
    DecryptionError,
    KeyDestroyedError,
    KeyId,
    KeyNotFoundError,
    KeyService,
    SecurityError,
    read_header,
)
from trialsynth.security.envelope import TAG_BYTES
from trialsynth.settings import SecuritySettings, Settings

SEG = 4096  # small segments so a few KB cover the multi-segment cases


@pytest.fixture
def svc(tmp_path: Path) -> KeyService:
    return KeyService(Settings(data_dir=tmp_path / "data", security=SecuritySettings(segment_size=SEG)))


def _raw_object(svc: KeyService, data: bytes, tenant: str = "acme", name: str = "dm.csv") -> Path:
    src = svc.settings.data_path.parent / f"plain-{name}"
    src.write_bytes(data)
    dst = svc.settings.raw_dir / tenant / "S1" / "d1" / "v1" / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    svc.encrypt_file(src, dst, tenant, svc.logical_path(dst))
    return dst


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, 3 * SEG, 3 * SEG + 17])
def test_file_round_trip_at_segment_edges(svc, size):
    data = os.urandom(size)
    path = _raw_object(svc, data)
    if size >= 16:
        assert data[:16] not in path.read_bytes()
    with svc.open_decrypted(path, "acme") as fh:
        assert fh.read() == data
    header = read_header(path)
    n_segments = max(1, -(-size // SEG))  # ceil; an empty object still has one (empty, final) segment
    assert path.stat().st_size == header.body_offset + size + n_segments * TAG_BYTES


def test_bytes_round_trip_and_fresh_data_key_per_object(svc):
    a = svc.encrypt_bytes(b"same text", "acme", "lake/acme/S1/x.json")
    b = svc.encrypt_bytes(b"same text", "acme", "lake/acme/S1/x.json")
    assert a != b  # random data key and nonce per object
    assert read_header_bytes(a).wrapped_key != read_header_bytes(b).wrapped_key
    assert svc.decrypt_bytes(a, "acme", "lake/acme/S1/x.json") == b"same text"


def read_header_bytes(blob: bytes):
    return read_header(io.BytesIO(blob))


def test_object_moved_to_another_path_or_tenant_does_not_open(svc):
    path = _raw_object(svc, b"USUBJID,AGE\n001,54\n")
    moved = path.with_name("ae.csv")
    shutil.copyfile(path, moved)
    with pytest.raises(DecryptionError, match=r"encrypted as 'raw/acme/S1/d1/v1/dm.csv' but is being opened as"):
        svc.open_decrypted(moved, "acme")
    other = svc.settings.raw_dir / "beta" / "S1" / "d1" / "v1" / "dm.csv"
    other.parent.mkdir(parents=True)
    shutil.copyfile(path, other)
    with pytest.raises(DecryptionError, match=r"belongs to tenant 'acme'.*not 'beta'"):
        svc.open_decrypted(other, "beta")


def test_editing_the_header_to_claim_another_path_fails_authentication(svc):
    path = _raw_object(svc, b"x" * (2 * SEG))
    blob = path.read_bytes()
    forged = svc.settings.data_path / "raw/acme/S1/d1/v1/ae.csv"
    forged.write_bytes(blob.replace(b'"aad":"raw/acme/S1/d1/v1/dm.csv"', b'"aad":"raw/acme/S1/d1/v1/ae.csv"'))
    with pytest.raises(DecryptionError, match=r"does not unwrap with acme/v1"):
        svc.open_decrypted(forged, "acme")


# -- bad input: each names the object and the key, returns no plaintext, keeps the ciphertext ------

def _expect_failure(svc, path: Path, match: str, error=DecryptionError, tenant: str = "acme") -> None:
    before = path.read_bytes()
    out = path.with_name("decrypted.out")
    with pytest.raises(error, match=match) as info:
        svc.decrypt_file(path, out, tenant)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before, "a failed decryption must never modify the ciphertext"
    assert not out.exists(), "no partial plaintext may be left behind"
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_wrong_key_material_is_named(svc):
    path = _raw_object(svc, b"secret rows\n" * 100)
    ring = json.loads(svc.kms.path.read_text())  # same key id, different 32 bytes (e.g. a wrong backup)
    ring["tenants"]["acme"]["1"]["key"] = base64.b64encode(os.urandom(32)).decode()
    svc.kms.path.write_text(json.dumps(ring))
    _expect_failure(svc, path, r"does not unwrap with acme/v1 \(local keyring .*keyring.json\)")


def test_truncated_inside_a_segment(svc):
    path = _raw_object(svc, os.urandom(3 * SEG + 100))
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 50)
    _expect_failure(svc, path, r"segment 3 failed authentication.*key acme/v1")


def test_truncated_at_a_segment_boundary_is_reported_as_truncation(svc):
    path = _raw_object(svc, os.urandom(3 * SEG + 100))
    header = read_header(path)
    with open(path, "r+b") as fh:  # drop the final segment exactly: what a naive format would accept
        fh.truncate(header.body_offset + 3 * (SEG + TAG_BYTES))
    _expect_failure(svc, path, r"truncated after segment 2 \(its final segment is missing\).*key acme/v1")


def test_truncated_header_and_empty_body(svc):
    path = _raw_object(svc, b"abc")
    header = read_header(path)
    with open(path, "r+b") as fh:
        fh.truncate(header.body_offset)
    _expect_failure(svc, path, r"truncated \(segment 0 is missing.*key acme/v1")
    with open(path, "r+b") as fh:
        fh.truncate(20)
    _expect_failure(svc, path, r"header is truncated or corrupt")


def test_flipped_bit_in_a_tag(svc):
    path = _raw_object(svc, os.urandom(2 * SEG + 10))
    header = read_header(path)
    tag_of_first = header.body_offset + SEG  # segment 0 = SEG bytes of ciphertext, then its 16-byte tag
    blob = bytearray(path.read_bytes())
    blob[tag_of_first + 3] ^= 0x01
    path.write_bytes(bytes(blob))
    _expect_failure(svc, path, r"segment 0 failed authentication: the object is corrupted or was tampered with "
                               r"\(key acme/v1, local keyring")


def test_streaming_reader_releases_only_verified_segments(svc):
    data = os.urandom(3 * SEG)
    path = _raw_object(svc, data)
    blob = bytearray(path.read_bytes())
    blob[read_header(path).body_offset + 2 * (SEG + TAG_BYTES) + 5] ^= 0x80  # corrupt segment 2
    path.write_bytes(bytes(blob))
    with svc.open_decrypted(path, "acme") as fh:
        assert fh.read(2 * SEG) == data[: 2 * SEG]  # segments 0 and 1 verified and released
        with pytest.raises(DecryptionError, match="segment 2 failed authentication"):
            fh.read()


def test_unknown_key_id(svc):
    path = _raw_object(svc, b"rows")
    blob = path.read_bytes().replace(b'"key_id":"acme/v1"', b'"key_id":"acme/v7"')
    path.write_bytes(blob)
    _expect_failure(svc, path, r"key acme/v7 does not exist in local keyring", error=KeyNotFoundError)


def test_destroyed_version(svc):
    path = _raw_object(svc, b"rows")
    svc.rotate("acme")
    destroyed, lost = svc.destroy("acme", up_to=1)
    assert destroyed == [KeyId("acme", 1)] and lost == 1
    _expect_failure(svc, path, r"key acme/v1 was destroyed at .*unrecoverable \(crypto-shredded\)",
                    error=KeyDestroyedError)


def test_not_an_envelope_and_wrong_format_version(svc):
    plain = svc.settings.data_path / "raw" / "acme" / "plain.csv"
    plain.parent.mkdir(parents=True)
    plain.write_bytes(b"USUBJID\n001\n")
    _expect_failure(svc, plain, r"is not a trialsynth encrypted object")
    path = _raw_object(svc, b"rows")
    blob = bytearray(path.read_bytes())
    blob[5] = 9
    path.write_bytes(bytes(blob))
    _expect_failure(svc, path, r"uses envelope format 9", error=SecurityError)


def test_stream_api_from_a_descriptor_and_polars_reads_the_plaintext(svc):
    """The raw zone copies from a no-follow descriptor; readers (polars) take the decrypting stream."""
    import polars as pl

    src = svc.settings.data_path.parent / "dm.csv"
    src.write_text("USUBJID,AGE\n" + "".join(f"{i:04d},{20 + i % 60}\n" for i in range(2000)))
    final = svc.settings.raw_dir / "acme" / "S1" / "d1" / "v1" / "dm.csv"
    final.parent.mkdir(parents=True)
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fin, open(final, "xb") as fout:
        header = svc.encrypt_stream(fin, fout, "acme", svc.logical_path(final))
    assert header.aad == "raw/acme/S1/d1/v1/dm.csv"
    with svc.open_decrypted(final, "acme") as fh:
        df = pl.read_csv(fh)
    assert df.shape == (2000, 2) and df["AGE"].sum() == sum(20 + i % 60 for i in range(2000))
