"""The immutable raw zone: a drop's bytes copied unchanged, sha256 per file, never overwritten.

Layout: ``<raw>/<tenant>/<study>/<drop_id>/v<N>/<file>`` plus ``v<N>/_manifest.json``. Landing the
same bytes again is a no-op that returns the existing version; different bytes under the same drop id
become ``v<N+1>``. Each file is hashed and copied in one pass from one descriptor opened without
following links (see :mod:`trialsynth.ingest.landing`), made read-only, and a version directory
appears only once complete (copied into a temp directory, then renamed). Entries of the drop that are
refused (links, hard links, FIFOs, sub-directories ...) are never copied; the manifest lists them under
``refused`` (and hidden files under ``ignored``), and a version with refusals is never ingested.

Every copied file is encrypted at rest with the tenant's key (:mod:`trialsynth.security`: AES-256-GCM
envelope, associated data = ``raw/<tenant>/<study>/<drop>/v<N>/<file>``, so an object moved to another
tenant, drop or name does not open). The manifest keeps the sha256 of the sponsor's plaintext bytes
(deduplication and lineage are about those) and names the key version of each file.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from trialsynth.ingest.landing import RAW_MANIFEST as MANIFEST
from trialsynth.ingest.landing import Drop
from trialsynth.security import ALGORITHM, KeyService, is_encrypted

RAW_POINTER = "raw_pointer.json"  # in <lake>/<tenant>/<study>/: the raw version the bronze step reads
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


@dataclass(frozen=True)
class RawVersion:
    drop: Drop
    version: int
    path: Path
    files: dict[str, str]  # file name -> sha256
    content_hash: str
    created: bool  # False when these bytes were already in the raw zone
    refused: dict[str, str] = field(default_factory=dict)  # entry name -> why it was not copied
    key_ids: dict[str, str] = field(default_factory=dict)  # file name -> key ("tenant/vN") at landing

    def file_path(self, name: str) -> Path:
        """The stored object (ciphertext when ``key_ids`` names it): read it with :meth:`decrypt_to`."""
        return self.path / name

    def read_bytes(self, name: str, keys: KeyService | None = None) -> bytes:
        """The sponsor's bytes of ``name`` (decrypted and verified)."""
        source = self.file_path(name)
        if not is_encrypted(source):
            return source.read_bytes()
        with (keys or KeyService()).open_decrypted(source, self.drop.tenant, raw_aad(self.drop, self.version, name)) as fh:
            return fh.read()

    def decrypt_to(self, name: str, directory: Path, keys: KeyService | None = None) -> Path:
        """The file's plaintext as ``directory/name`` (verified; versions landed before encryption
        are copied as they are)."""
        target, source = directory / name, self.file_path(name)
        if not is_encrypted(source):
            shutil.copyfile(source, target)
            return target
        aad = raw_aad(self.drop, self.version, name)
        return (keys or KeyService()).decrypt_file(source, target, self.drop.tenant, aad)

    def refusal_message(self) -> str:
        """One sentence naming every refused entry and why (empty when nothing was refused)."""
        if not self.refused:
            return ""
        items = "; ".join(f"{name}: {why}" for name, why in sorted(self.refused.items()))
        return (f"drop {self.drop.tenant}/{self.drop.study}/{self.drop.drop_id} refused as a whole, nothing of it "
                f"is ingested: {items}")


def _versions(drop_root: Path) -> list[tuple[int, Path]]:
    out = []
    for p in drop_root.glob("v*"):
        if p.is_dir() and p.name[1:].isdigit() and (p / MANIFEST).is_file():
            out.append((int(p.name[1:]), p))
    return sorted(out)


def known_tenants(raw_dir: Path) -> list[str]:
    """Tenants that already have data in the raw zone (they keep their name when a new folder clashes)."""
    return sorted(p.name for p in raw_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) if raw_dir.is_dir() else []


def raw_aad(drop: Drop, version: int, name: str) -> str:
    """Associated data binding a raw object to its tenant, study, drop, version and name."""
    return f"raw/{drop.tenant}/{drop.study}/{drop.drop_id}/v{version}/{name}"


def _from_manifest(drop: Drop, number: int, path: Path, manifest: dict) -> RawVersion:
    return RawVersion(drop, number, path, manifest["files"], manifest["content_hash"], created=False,
                      refused=manifest.get("refused", {}),
                      key_ids=(manifest.get("encryption") or {}).get("key_ids_at_landing", {}))


def land_drop(drop: Drop, raw_dir: Path, keys: KeyService | None = None) -> RawVersion:
    """Copy ``drop`` into the raw zone, encrypted with its tenant's key, unless identical bytes are
    already there. ``keys`` defaults to the settings' key service."""
    drop_root = raw_dir / drop.tenant / drop.study / drop.drop_id
    drop_root.mkdir(parents=True, exist_ok=True)
    tmp = drop_root / f".incoming-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        contents = drop.read(copy_to=tmp)
        if not contents.files and not contents.refused:
            raise ValueError(f"drop {drop.path} has no data files")
        content_hash = contents.content_hash
        versions = _versions(drop_root)
        for number, path in versions:
            manifest = json.loads((path / MANIFEST).read_text())
            if manifest["content_hash"] == content_hash:
                return _from_manifest(drop, number, path, manifest)
        number = versions[-1][0] + 1 if versions else 1
        final = drop_root / f"v{number}"
        keys = keys or KeyService()
        key_ids = {}
        for name in contents.files:
            header = keys.encrypt_file(tmp / name, tmp / name, drop.tenant, raw_aad(drop, number, name))
            key_ids[name] = str(header.key_id)
            os.chmod(tmp / name, _READ_ONLY)
        manifest = {
            "tenant": drop.tenant,
            "study": drop.study,
            "drop_id": drop.drop_id,
            "version": number,
            "content_hash": content_hash,
            "files": contents.files,
            "sizes": contents.sizes,
            "refused": contents.refused,
            "ignored": contents.ignored,
            # the object's own header is authoritative: `trialsynth keys rewrap` moves it to newer versions
            "encryption": {"algorithm": ALGORITHM, "key_ids_at_landing": key_ids},
            "landed_at": datetime.now(UTC).isoformat(),
            "source": str(drop.path),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        os.chmod(tmp / MANIFEST, _READ_ONLY)
        try:
            os.rename(tmp, final)  # atomic: the version appears complete or not at all
        except OSError as exc:  # a concurrent run created the same version number first
            raise RuntimeError(f"raw zone version {final} was created concurrently; retry the ingest") from exc
        return RawVersion(drop, number, final, contents.files, content_hash, created=True, refused=contents.refused,
                          key_ids=key_ids)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_version(raw_dir: Path, tenant: str, study: str, drop_id: str, version: int) -> RawVersion:
    """A raw-zone version as recorded in its manifest."""
    path = raw_dir / tenant / study / drop_id / f"v{version}"
    manifest = json.loads((path / MANIFEST).read_text())
    return _from_manifest(Drop(tenant, study, drop_id, Path(manifest["source"])), version, path, manifest)


def write_pointer(study_dir: Path, raw: RawVersion) -> bool:
    """Point ``<study_dir>/raw_pointer.json`` at ``raw`` (atomically); False when it already did."""
    pointer = {"drop_id": raw.drop.drop_id, "version": raw.version, "path": str(raw.path),
               "files": raw.files, "content_hash": raw.content_hash}
    target = study_dir / RAW_POINTER
    text = json.dumps(pointer, indent=2)
    if target.is_file() and target.read_text() == text:
        return False
    study_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{RAW_POINTER}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, target)
    return True
