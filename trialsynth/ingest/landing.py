"""The landing zone: ``<landing>/<tenant>/<study>/<drop_id>/`` written by sponsors and CROs.

**Complete.** A drop is read only once its ``_READY`` marker (or a ``manifest.json``) exists as a
regular file: uploaders write it last, so a half-copied drop is never read. A drop folder whose name
starts with '.' is an upload in progress and is skipped; ``<landing>/.staging`` is the demo generator's
staging folder. Every other folder that is not taken (hidden or unsafe tenant/study names, links,
tenant names that normalise to another tenant's, see :mod:`trialsynth.names`) is reported with the
reason by :func:`scan_ready_drops`, never ignored silently.

**What is read.** Only regular files physically inside the drop folder. The tenant, study and drop
folders must be real folders, not symbolic links; they are opened one below the other without following
links, so swapping one for a link while a drop is read changes nothing. Each entry of the drop folder
is first examined with ``lstat`` (a FIFO is never opened, so a scan cannot block on one), then opened
with ``O_NOFOLLOW | O_NONBLOCK`` relative to the drop folder's descriptor; ``fstat`` of that descriptor
must show the same single-link regular file, and its real path must lie in the drop folder. The sha256
and the raw-zone copy are made from that one descriptor, so what is hashed is what is kept.

**Refused** (recorded as ``refused: {name: reason}`` in the raw zone manifest, never copied, and the
drop fails as a whole so nothing of it reaches bronze): symbolic links (even to a file of the same
drop), hard links (a file with more than one name: a link to another tenant's file would otherwise
pass for a file of this drop), sub-directories (their contents are not read), FIFOs, sockets, devices
and files that cannot be opened. Hidden files (``.DS_Store``, any name starting with '.') are not read
and are listed as ``ignored``.

**Order.** A study's drops are processed one at a time in *arrival order*: the order in which
trialsynth first saw each drop complete with its current bytes; drops first seen in the same scan are
ordered by their marker's modification time, then by drop id (details in :mod:`trialsynth.ingest.drops`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from trialsynth.hashing import sha256_json
from trialsynth.names import identity_clashes, partition_key, validate_name

READY_MARKERS = ("_READY", "manifest.json")
RAW_MANIFEST = "_manifest.json"  # the raw zone's manifest beside the copied files: no drop file may be called so
STAGING = ".staging"  # the demo generator's staging folder under the landing root
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 20
_SPECIAL = {stat.S_IFIFO: "named pipe (FIFO)", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
            stat.S_IFBLK: "block device"}


class IncompleteDropError(ValueError):
    """Raised when a drop has no ``_READY`` marker yet."""


class UnsafeDropError(ValueError):
    """Raised for a drop that must not be read at all: a linked or look-alike tenant/study/drop folder."""


class _Refused(Exception):
    """One entry of a drop that is not read (the message says why)."""


@dataclass(frozen=True)
class DropContents:
    """What reading a drop folder found. ``files``/``sizes``: the regular files read (sha256, bytes);
    ``refused``: entries not read that fail the drop; ``ignored``: hidden entries, not read."""

    files: dict[str, str]
    sizes: dict[str, int]
    refused: dict[str, str]
    ignored: dict[str, str]

    @property
    def content_hash(self) -> str:
        """sha256 over (file name, file sha256) pairs: equal for a byte-identical redelivery. Refused
        entries count too, so removing an offending link makes the drop new bytes."""
        pairs = sorted(self.files.items())
        return sha256_json(pairs if not self.refused else {"files": pairs, "refused": sorted(self.refused.items())})


@dataclass(frozen=True)
class Drop:
    tenant: str
    study: str
    drop_id: str
    path: Path

    @property
    def partition_key(self) -> str:
        return partition_key(self.tenant, self.study)

    @contextmanager
    def _open_dir(self) -> Iterator[int]:
        """A descriptor of the drop folder, reached from the landing root without following links."""
        fd = os.open(self.path.parents[2], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the root may be an operator's link
        try:
            for depth, part in enumerate((self.tenant, self.study, self.drop_id)):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    where = (self.path.parents[1], self.path.parents[0], self.path)[depth]
                    if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                        raise UnsafeDropError(_link_message(where)) from exc
                    raise
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def read(self, copy_to: Path | None = None) -> DropContents:
        """Hash every regular file of the drop (and copy it into the existing folder ``copy_to``
        from the same descriptor); refuse everything else, without opening it."""
        files: dict[str, str] = {}
        sizes: dict[str, int] = {}
        refused: dict[str, str] = {}
        ignored: dict[str, str] = {}
        with self._open_dir() as dir_fd:
            base = _fd_path(dir_fd)
            for name in sorted(os.listdir(dir_fd)):
                if name in READY_MARKERS:
                    continue
                if name.startswith("."):
                    ignored[name] = "hidden: not read"
                    continue
                if why := _bad_file_name(name):
                    refused[name] = why
                    continue
                try:
                    files[name], sizes[name] = self._read_one(dir_fd, name, base, copy_to)
                except _Refused as exc:
                    refused[name] = str(exc)
        return DropContents(files, sizes, refused, ignored)

    def _read_one(self, dir_fd: int, name: str, base: str | None, copy_to: Path | None) -> tuple[str, int]:
        seen = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        _check_entry(name, seen, dir_fd)
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:  # ELOOP: it became a link after the lstat; EACCES ...
            raise _Refused(f"cannot be opened: {exc.strerror}") from exc
        with os.fdopen(fd, "rb", buffering=0) as src:
            before = os.fstat(fd)
            if (before.st_dev, before.st_ino) != (seen.st_dev, seen.st_ino):
                raise _Refused("replaced by another file while the drop was read")
            _check_entry(name, before, dir_fd)
            real = _fd_path(fd)
            if base is not None and real is not None and os.path.dirname(real) != base:
                raise _Refused(f"its real path {real} is outside the drop folder {base}")
            if copy_to is None:
                digest = hashlib.file_digest(src, "sha256").hexdigest()
            else:  # copy in the kernel from this descriptor, then hash the copy: what is kept is what is hashed
                target = copy_to / name
                with open(target, "xb") as out:
                    _copy_fd(fd, out)
                with open(target, "rb") as copy:
                    digest = hashlib.file_digest(copy, "sha256").hexdigest()
            after = os.fstat(fd)
            size = after.st_size if copy_to is None else target.stat().st_size
        if size != after.st_size or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise ValueError(f"{self.path / name} changed while being read; re-deliver the drop (write _READY last)")
        return digest, size

    def content_hash(self) -> str:
        return self.read().content_hash

    def signature(self) -> str:
        """A cheap fingerprint (lstat of every entry, markers included) that changes whenever the
        bytes may have: callers cache :meth:`content_hash` under it."""
        with self._open_dir() as dir_fd:
            entries = []
            for name in sorted(os.listdir(dir_fd)):
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                entries.append((name, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino, st.st_nlink))
        return sha256_json(entries)

    def ready_ns(self) -> int:
        """Modification time of the newest ready marker, in ns (0 when there is none)."""
        stamps = [st.st_mtime_ns for st in map(_lstat, (self.path / m for m in READY_MARKERS))
                  if st is not None and stat.S_ISREG(st.st_mode)]
        return max(stamps, default=0)


def _bad_file_name(name: str) -> str | None:
    if name == RAW_MANIFEST:
        return f"the name {RAW_MANIFEST} is reserved for the raw zone's own manifest; rename the file"
    if not name.isprintable() or any("\udc80" <= c <= "\udcff" for c in name):
        return f"file name {ascii(name)} has control characters or bytes that are not UTF-8; rename the file"
    return None


def _check_entry(name: str, st: os.stat_result, dir_fd: int) -> None:
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFLNK:
        raise _Refused(f"symbolic link to {os.readlink(name, dir_fd=dir_fd)!r}: only regular files physically "
                       "inside the drop folder are read; copy the file into the drop instead")
    if kind == stat.S_IFDIR:
        raise _Refused("sub-directory: its contents are not read; put every file directly in the drop folder")
    if kind != stat.S_IFREG:
        raise _Refused(f"{_SPECIAL.get(kind, 'special file')}: only regular files are read")
    if st.st_nlink > 1:
        raise _Refused(f"hard link ({st.st_nlink} names for one file): a file that also exists elsewhere may "
                       "belong to another tenant; copy it into the drop instead of linking it")


def _copy_fd(src_fd: int, out: BinaryIO) -> None:
    """Copy a whole descriptor into ``out`` with ``sendfile`` (no trip through Python buffers, as
    ``shutil.copyfile`` does for paths); a plain read/write loop where the system lacks it."""
    offset = 0
    try:
        while sent := os.sendfile(out.fileno(), src_fd, offset, 1 << 30):
            offset += sent
    except OSError:
        if offset:
            raise
        with os.fdopen(os.dup(src_fd), "rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)


def _fd_path(fd: int) -> str | None:
    """Where an open descriptor really is (Linux /proc); None where the system cannot say."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None


def _link_message(path: Path) -> str:
    return (f"{path} is a symbolic link: tenant, study and drop folders must be real folders of the "
            "landing zone, never links")


def is_ready(drop_dir: Path) -> bool:
    return any((st := _lstat(drop_dir / m)) is not None and stat.S_ISREG(st.st_mode) for m in READY_MARKERS)


def _real_dirs(folder: Path, kind: str, skipped: list[str], hidden_ok: bool = False) -> list[str]:
    """Names of the real sub-folders of ``folder`` that are safe ``kind`` names; every other folder
    or link is explained in ``skipped`` (hidden ones only unless ``hidden_ok``)."""
    names = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            where = folder / entry.name
            if entry.is_symlink():
                skipped.append(f"{where}: skipped: {_link_message(where)}")
            elif not entry.is_dir(follow_symlinks=False) or (kind == "tenant" and entry.name == STAGING):
                continue
            elif entry.name.startswith("."):
                if not hidden_ok:
                    skipped.append(f"{where}: skipped: a folder whose name starts with '.' is hidden and never "
                                   f"a {kind}; rename it if it should be one")
            else:
                try:
                    names.append(validate_name(entry.name, kind))
                except ValueError as exc:
                    skipped.append(f"{where}: skipped: {exc}")
    return names


def _tenant_clash(landing_dir: Path, tenant: str, known_tenants: Iterable[str]) -> str | None:
    return identity_clashes(_real_dirs(landing_dir, "tenant", []), known_tenants).get(tenant)


def open_drop(landing_dir: Path, tenant: str, study: str, drop_id: str, known_tenants: Iterable[str] = ()) -> Drop:
    """A complete drop, validating names and refusing linked folders, tenant names that clash with
    another tenant (``known_tenants``: tenants that already have data) and drops without their marker."""
    for value, kind in ((tenant, "tenant"), (study, "study"), (drop_id, "drop id")):
        validate_name(value, kind)
    path = landing_dir / tenant / study / drop_id
    for folder in (path.parents[1], path.parents[0], path):
        if (st := _lstat(folder)) is not None and stat.S_ISLNK(st.st_mode):
            raise UnsafeDropError(_link_message(folder))
    if not path.is_dir():
        raise FileNotFoundError(f"drop {path} does not exist")
    if clash := _tenant_clash(landing_dir, tenant, known_tenants):
        raise UnsafeDropError(clash)
    if not is_ready(path):
        raise IncompleteDropError(
            f"drop {path} is incomplete: no _READY marker (or manifest.json) as a regular file; it is read only "
            "once the uploader writes the marker last"
        )
    return Drop(tenant, study, drop_id, path)


def scan_ready_drops(landing_dir: Path, known_tenants: Iterable[str] = ()) -> tuple[list[Drop], list[str]]:
    """All complete drops under the landing zone (sorted by tenant, study, drop id), and one message
    per folder not taken (unsafe or clashing names, links, hidden tenant/study folders, missing
    marker), so callers can log why a folder was not picked up."""
    drops: list[Drop] = []
    skipped: list[str] = []
    if not landing_dir.is_dir():
        return drops, skipped
    tenants = _real_dirs(landing_dir, "tenant", skipped)
    clashes = identity_clashes(tenants, known_tenants)
    for tenant in tenants:
        if tenant in clashes:
            skipped.append(f"{landing_dir / tenant}: skipped: {clashes[tenant]}")
            continue
        for study in _real_dirs(landing_dir / tenant, "study", skipped):
            for drop_id in _real_dirs(landing_dir / tenant / study, "drop id", skipped, hidden_ok=True):
                path = landing_dir / tenant / study / drop_id
                if is_ready(path):
                    drops.append(Drop(tenant, study, drop_id, path))
                else:
                    skipped.append(f"drop {path} is incomplete: no _READY marker (or manifest.json) yet")
    return drops, skipped


def latest_drop(landing_dir: Path, tenant: str, study: str, known_tenants: Iterable[str] = ()) -> Drop:
    """The most recently completed drop of a tenant/study (by marker time, then drop id)."""
    drops = [d for d in scan_ready_drops(landing_dir, known_tenants)[0] if (d.tenant, d.study) == (tenant, study)]
    if not drops:
        raise FileNotFoundError(f"no complete drop for tenant {tenant!r}, study {study!r} under {landing_dir}")
    return max(drops, key=lambda d: (d.ready_ns(), d.drop_id))
