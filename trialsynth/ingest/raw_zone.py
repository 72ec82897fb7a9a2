"""The immutable raw zone: a drop's bytes copied unchanged, sha256 per file, never overwritten.

Layout: ``<raw>/<tenant>/<study>/<drop_id>/v<N>/<file>`` plus ``v<N>/_manifest.json``. Landing the
same bytes again is a no-op that returns the existing version; different bytes under the same drop id
become ``v<N+1>``. Files are made read-only after the copy is verified, and a version directory
appears only once complete (copied into a temp directory, then renamed).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from trialsynth.hashing import sha256_file
from trialsynth.ingest.landing import Drop

MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class RawVersion:
    drop: Drop
    version: int
    path: Path
    files: dict[str, str]  # file name -> sha256
    content_hash: str
    created: bool  # False when these bytes were already in the raw zone

    def file_path(self, name: str) -> Path:
        return self.path / name


def _versions(drop_root: Path) -> list[tuple[int, Path]]:
    out = []
    for p in drop_root.glob("v*"):
        if p.is_dir() and p.name[1:].isdigit() and (p / MANIFEST).is_file():
            out.append((int(p.name[1:]), p))
    return sorted(out)


def land_drop(drop: Drop, raw_dir: Path) -> RawVersion:
    """Copy ``drop`` into the raw zone unless identical bytes are already there."""
    hashes = drop.file_hashes()
    if not hashes:
        raise ValueError(f"drop {drop.path} has no data files")
    content_hash = drop.content_hash(hashes)
    drop_root = raw_dir / drop.tenant / drop.study / drop.drop_id
    drop_root.mkdir(parents=True, exist_ok=True)
    versions = _versions(drop_root)
    for number, path in versions:
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest["content_hash"] == content_hash:
            return RawVersion(drop, number, path, manifest["files"], content_hash, created=False)

    number = versions[-1][0] + 1 if versions else 1
    final = drop_root / f"v{number}"
    tmp = drop_root / f".v{number}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, digest in hashes.items():
        target = tmp / name
        shutil.copyfile(drop.path / name, target)
        if sha256_file(target) != digest:  # the uploader changed the file while we copied
            shutil.rmtree(tmp)
            raise ValueError(f"{drop.path / name} changed while being copied to the raw zone; re-deliver the drop")
        os.chmod(target, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    manifest = {
        "tenant": drop.tenant,
        "study": drop.study,
        "drop_id": drop.drop_id,
        "version": number,
        "content_hash": content_hash,
        "files": hashes,
        "sizes": {n: (tmp / n).stat().st_size for n in hashes},
        "landed_at": datetime.now(UTC).isoformat(),
        "source": str(drop.path),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    os.chmod(tmp / MANIFEST, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    try:
        os.rename(tmp, final)  # atomic: the version appears complete or not at all
    except OSError as exc:  # a concurrent run created the same version number first
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"raw zone version {final} was created concurrently; retry the ingest") from exc
    return RawVersion(drop, number, final, hashes, content_hash, created=True)
