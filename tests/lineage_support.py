"""Shared helpers of the tests/test_lineage_*.py files: a lineage store on the local lake or on
SeaweedFS (S3 with Object Lock, the ``seaweedfs`` session fixture), chains to tamper with, and raw
object access that goes around the store the way an attacker would."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from trialsynth.hashing import sha256_file
from trialsynth.lineage import (
    ChainStore,
    FileSigner,
    KeyRing,
    LocalLineageStore,
    S3LineageStore,
    VerificationReport,
    file_dataset,
    verify_store,
)
from trialsynth.lineage.backends import S3Backend

RETENTION_DAYS = 10 / 1440  # ten minutes: long enough for a test, short enough for SeaweedFS's disk


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest, signer: FileSigner | None = None,
               retention_days: float = RETENTION_DAYS) -> ChainStore:
    signer = signer or FileSigner(tmp_path / "keys" / "lineage.pem")
    if kind == "local":
        return LocalLineageStore(tmp_path / "lake", signer)
    seaweed = request.getfixturevalue("seaweedfs")
    bucket = f"lineage-{uuid.uuid4().hex[:12]}"
    seaweed.make_bucket(bucket, object_lock=True)
    return S3LineageStore(seaweed.client(), bucket, retention_days, signer)


BACKENDS = pytest.mark.parametrize("kind", ["local", "s3"])  # every store test runs on both


def fill(store: ChainStore, tenant: str, study: str, n: int, outputs_dir: Path, start: int = 0) -> list[dict]:
    """Append ``n`` manifests, each with its own output file under ``outputs_dir``."""
    outputs_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(start, start + n):
        out = outputs_dir / f"{tenant}-{study}-out{i}.bin"
        out.write_bytes(f"{tenant}/{study} output {i}".encode())
        records.append(store.append(tenant, study, {
            "asset_key": f"asset{i}", "input_sha256s": {"in.csv": f"{i:064x}"}, "outputs": [file_dataset(out, sha256_file(out))],
            "code_version": "test", "parameters": {"i": i}, "seed": i}))
    return records


def verify(store: ChainStore, *trusted: str) -> VerificationReport:
    """Verify every chain trusting the store's signer (plus ``trusted`` key ids)."""
    return verify_store(store, KeyRing({store.signer.key_id, *trusted}))


def is_s3(store: ChainStore) -> bool:
    return isinstance(store.backend, S3Backend)


def raw_read(store: ChainStore, key: str) -> bytes:
    return store.backend.get(key).data


def raw_write(store: ChainStore, key: str, data: bytes) -> None:
    """Write around the store: a plain file write / a plain S3 PUT (no condition, no retention)."""
    if is_s3(store):
        store.backend.client.put_object(Bucket=store.backend.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")
        return
    path = store.backend.path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o644)  # the store leaves files read-only; an attacker with the rights changes that
    path.write_bytes(data)


def raw_delete(store: ChainStore, key: str) -> None:
    if is_s3(store):
        store.backend.client.delete_object(Bucket=store.backend.bucket, Key=key)  # leaves a delete marker
    else:
        store.backend.path(key).unlink()


def keys_of(store: ChainStore, tenant: str, study: str) -> list[str]:
    return sorted(store.backend.scan(f"lineage/{tenant}/{study}/"))
