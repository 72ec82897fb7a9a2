"""The landing zone: ``<landing>/<tenant>/<study>/<drop_id>/`` written by sponsors and CROs.

A drop is complete only once its ``_READY`` marker (or a ``manifest.json``) exists: uploaders write
it last, so a half-copied drop is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trialsynth.hashing import sha256_file, sha256_json
from trialsynth.names import partition_key, validate_name

READY_MARKERS = ("_READY", "manifest.json")
IGNORED = {*READY_MARKERS, ".DS_Store"}


@dataclass(frozen=True)
class Drop:
    tenant: str
    study: str
    drop_id: str
    path: Path

    @property
    def partition_key(self) -> str:
        return partition_key(self.tenant, self.study)

    def data_files(self) -> list[Path]:
        """The drop's data files (markers and hidden files excluded), sorted by name."""
        return sorted(
            p for p in self.path.iterdir() if p.is_file() and p.name not in IGNORED and not p.name.startswith(".")
        )

    def file_hashes(self) -> dict[str, str]:
        return {p.name: sha256_file(p) for p in self.data_files()}

    def content_hash(self, file_hashes: dict[str, str] | None = None) -> str:
        """sha256 over (file name, file sha256) pairs: equal for a byte-identical redelivery."""
        return sha256_json(sorted((file_hashes or self.file_hashes()).items()))


class IncompleteDropError(ValueError):
    """Raised when a drop has no ``_READY`` marker yet."""


def is_ready(drop_dir: Path) -> bool:
    return any((drop_dir / m).is_file() for m in READY_MARKERS)


def open_drop(landing_dir: Path, tenant: str, study: str, drop_id: str) -> Drop:
    """A complete drop, validating names and refusing drops without their ready marker."""
    for value, kind in ((tenant, "tenant"), (study, "study"), (drop_id, "drop id")):
        validate_name(value, kind)
    path = landing_dir / tenant / study / drop_id
    if not path.is_dir():
        raise FileNotFoundError(f"drop {path} does not exist")
    if not is_ready(path):
        raise IncompleteDropError(
            f"drop {path} is incomplete: no _READY marker (or manifest.json); it is read only once the "
            "uploader writes the marker last"
        )
    return Drop(tenant, study, drop_id, path)


def scan_ready_drops(landing_dir: Path) -> tuple[list[Drop], list[str]]:
    """All complete drops under the landing zone, and one message per directory skipped
    (unsafe names, missing marker), so callers can log why a folder was not picked up."""
    drops: list[Drop] = []
    skipped: list[str] = []
    if not landing_dir.is_dir():
        return drops, skipped
    for drop_dir in sorted(landing_dir.glob("*/*/*")):
        if not drop_dir.is_dir():
            continue
        tenant, study, drop_id = drop_dir.relative_to(landing_dir).parts
        if any(part.startswith(".") for part in (tenant, study, drop_id)):
            continue  # uploaders' staging folders (e.g. .staging/) are not drops
        try:
            drops.append(open_drop(landing_dir, tenant, study, drop_id))
        except ValueError as exc:
            skipped.append(str(exc))
    return drops, skipped


def latest_drop(landing_dir: Path, tenant: str, study: str) -> Drop:
    """The most recently completed drop of a tenant/study (by marker time)."""
    drops = [d for d in scan_ready_drops(landing_dir)[0] if (d.tenant, d.study) == (tenant, study)]
    if not drops:
        raise FileNotFoundError(f"no complete drop for tenant {tenant!r}, study {study!r} under {landing_dir}")
    return max(drops, key=lambda d: max((d.path / m).stat().st_mtime for m in READY_MARKERS if (d.path / m).exists()))
