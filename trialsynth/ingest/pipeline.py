"""Raw-zone version -> validated bronze Parquet + quarantine, as one plain function.

The promise: every row of every tabular file of the drop ends in bronze or in quarantine with its
reasons, and nothing else gets in. A study's bronze is always exactly one drop: when any file of a
drop cannot be taken (unreadable, truncated, another study's STUDYID, a domain sent twice), nothing
of that drop reaches bronze — the previous drop's bronze stays whole — and the run fails naming
each file. Otherwise the new bronze folder is written beside the old one and swapped in, so readers
see the old drop or the new one, never a mix (a crash between the two renames is repaired by the
next ingest, see :func:`_swap_in`).

Used by the Dagster bronze asset and by the ingest benchmark; no Dagster imports here.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import polars as pl

from trialsynth.domains import DOMAINS
from trialsynth.ingest.bronze import (
    bronze_dir,
    empty_domain_frame,
    to_bronze_frame,
    write_domains_index,
    write_parquet_atomic,
)
from trialsynth.ingest.consistency import (
    domain_value_problems,
    natural_key_problems,
    studyid_mismatches,
    subject_problems,
    supplemental_parent_problems,
)
from trialsynth.ingest.raw_zone import MANIFEST, RawVersion
from trialsynth.ingest.readers import SOURCE_ROW, SUPPORTED, RowProblem, UnreadableFileError, read_file
from trialsynth.ingest.sdtm import Target, plan_files, read_define
from trialsynth.ingest.validation import ValidationResult, validate_frame
from trialsynth.security import KeyService

FILE_ROW = "_file_row"
SOURCE_FILE = "_source_file"
DEFINE_NAMES = ("define.xml",)


@dataclass
class DomainOutcome:
    domain: str  # bronze name below bronze/: "lb", "supp/suppae", "other/mh"
    files: list[str]
    rows_in: int
    rows_passed: int
    rows_quarantined: int
    bronze_path: Path
    bronze_sha256: str | None  # None when the drop failed and bronze was left untouched
    input_sha256s: dict[str, str]
    quarantine_path: Path | None = None
    expectations: list[dict] = field(default_factory=list)

    @property
    def reasons_path(self) -> Path | None:
        """The quarantine's reasons (file, row, column, rule, detail), beside its rows."""
        return self.quarantine_path.with_name(self.quarantine_path.stem + "_reasons.parquet") if self.quarantine_path else None

    @property
    def file(self) -> str | None:
        return ", ".join(self.files) or None


@dataclass
class IngestReport:
    tenant: str
    study: str
    drop_id: str
    raw_version: int
    domains: dict[str, DomainOutcome]  # every bronze output (modelled domains, supp/, other/)
    placements: dict[str, str]  # every file of the drop -> where it went and how it was checked
    failures: dict[str, str]  # file -> why the drop could not be taken
    seconds: float

    @property
    def bronze_written(self) -> bool:
        return not self.failures

    @property
    def rows_landed(self) -> int:
        return sum(o.rows_passed for o in self.domains.values())

    @property
    def rows_quarantined(self) -> int:
        return sum(o.rows_quarantined for o in self.domains.values())


def quarantine_aad(path: Path) -> str:
    """Associated data of a quarantine file: ``quarantine/<tenant>/<study>/<drop>-v<N>/<name>``."""
    parts = path.parts
    at = max(i for i in range(3, len(parts)) if parts[i - 1] == "quarantine" and re.fullmatch(r".+-v\d+", parts[i]))
    return "/".join(["quarantine", parts[at - 3], parts[at - 2], *parts[at:]])


def write_encrypted_parquet(frame: pl.DataFrame, path: Path, tenant: str, keys: KeyService) -> None:
    """``frame`` as Parquet, encrypted with the tenant's key (the plaintext never touches the disk)."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(keys.encrypt_bytes(buffer.getvalue(), tenant, quarantine_aad(path)))
    tmp.replace(path)


def read_quarantine(path: Path, tenant: str, keys: KeyService | None = None) -> pl.DataFrame:
    """A quarantine file (rows or reasons) decrypted."""
    blob = (keys or KeyService()).decrypt_bytes(path.read_bytes(), tenant, quarantine_aad(path), name=str(path))
    return pl.read_parquet(io.BytesIO(blob))


def _combine(files: list[str], frames: dict[str, pl.DataFrame], problems: dict[str, list[RowProblem]]
             ) -> tuple[pl.DataFrame, pl.DataFrame, list[RowProblem]]:
    """One frame from a target's files (split datasets), numbered 1..n across them, plus the map
    back to (file, row in file) and the readers' problems renumbered."""
    parts, maps, renumbered, offset = [], [], [], 0
    for file in files:
        df = frames[file]
        parts.append(df.drop(SOURCE_ROW))
        maps.append(df.select(pl.int_range(offset + 1, offset + df.height + 1, dtype=pl.Int64).alias(SOURCE_ROW),
                              pl.lit(file, dtype=pl.String).alias(SOURCE_FILE), pl.col(SOURCE_ROW).alias(FILE_ROW)))
        renumbered += [RowProblem(p.row + offset, p.column, p.rule, p.detail) for p in problems.get(file, [])]
        offset += df.height
    combined = parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed")
    return combined.with_columns(pl.int_range(1, offset + 1, dtype=pl.Int64).alias(SOURCE_ROW)), pl.concat(maps), renumbered


def _back_to_files(frame: pl.DataFrame, rowmap: pl.DataFrame, row_column: str = SOURCE_ROW) -> pl.DataFrame:
    """Replace the combined row number by the file and the row in that file. The combined rows are
    numbered 1..n in ``rowmap``'s order, so row r is ``rowmap``'s row r - 1 (a gather, not a join)."""
    at = frame[row_column] - 1
    return frame.drop(row_column).with_columns(rowmap[SOURCE_FILE].gather(at), rowmap[FILE_ROW].gather(at).alias(row_column))


def _swap_in(staged: Path, final: Path) -> None:
    """Make ``staged`` the bronze folder: final -> .prev, staged -> final, drop .prev. A crash
    between the renames leaves no ``final`` but a ``.prev``, which :func:`_recover` puts back."""
    previous = final.with_name(final.name + ".prev")
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        final.rename(previous)
    staged.rename(final)
    shutil.rmtree(previous, ignore_errors=True)


def _recover(final: Path) -> None:
    previous = final.with_name(final.name + ".prev")
    if previous.exists() and not final.exists():
        previous.rename(final)


def _in_parallel(function, items: list) -> list:
    """``[function(x) for x in items]``, on up to as many threads as cores: the work is polars (and
    hashing, file I/O), which runs outside the GIL, so independent files overlap."""
    if len(items) < 2:
        return [function(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(len(items), os.cpu_count() or 1, 4)) as pool:
        return list(pool.map(function, items))


def _read_or_error(path: Path) -> tuple[pl.DataFrame, list[RowProblem]] | UnreadableFileError:
    try:
        return read_file(path)
    except UnreadableFileError as exc:
        return exc


@dataclass(frozen=True)
class _Subjects:
    """The subjects of the drop's DM: those that passed, those quarantined, and the DM file(s)."""

    passed: frozenset[str] = frozenset()
    quarantined: frozenset[str] = frozenset()
    dm_file: str | None = None

    @classmethod
    def of_dm(cls, res: ValidationResult, dm_file: str) -> _Subjects:
        passed = frozenset(str(s).strip() for s in res.passed["USUBJID"].drop_nulls().to_list())
        quarantined = frozenset(str(s).strip() for s in res.quarantined["USUBJID"].drop_nulls().to_list())
        return cls(passed, quarantined - passed, dm_file)


def _check_target(target: Target, frames: dict[str, pl.DataFrame], read_problems: dict[str, list[RowProblem]],
                  parents: dict[str, pl.DataFrame], subjects: _Subjects
                  ) -> tuple[pl.DataFrame, pl.DataFrame, ValidationResult | UnreadableFileError | None]:
    """One target's files combined, cross-checked and validated: ``(combined, rowmap, result)``;
    the result is None for a table kept unvalidated, the error when a required column is missing."""
    combined, rowmap, problems = _combine(target.files, frames, read_problems)
    if target.spec is None:
        return combined, rowmap, None
    if target.name != "dm" and "USUBJID" in combined.columns:
        problems += subject_problems(combined, set(subjects.passed), set(subjects.quarantined), subjects.dm_file)
    if target.kind == "supplemental":
        problems += supplemental_parent_problems(combined, parents)
    elif target.code:
        problems += domain_value_problems(combined, target.code) + natural_key_problems(combined, target.code)
    try:
        return combined, rowmap, validate_frame(combined, target.spec, " + ".join(target.files), problems)
    except UnreadableFileError as exc:
        return combined, rowmap, exc


def ingest_raw_version(raw: RawVersion, lake_dir: Path, log=print) -> IngestReport:
    """Read, check and validate every file of a raw-zone version; write bronze only when the whole
    drop can be taken. Never raises for bad input: the caller fails the run naming ``failures``."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trialsynth-plain-") as plain:  # 0700, removed at the end
        keys = KeyService()
        return _ingest(raw, lake_dir, log, start, Path(plain), keys)


def _ingest(raw: RawVersion, lake_dir: Path, log, start: float, plain: Path, keys: KeyService) -> IngestReport:
    tenant, study, drop_id = raw.drop.tenant, raw.drop.study, raw.drop.drop_id
    final_dir = bronze_dir(lake_dir, tenant, study)
    _recover(final_dir)
    quarantine_dir = lake_dir / tenant / study / "quarantine" / f"{drop_id}-v{raw.version}"
    placements: dict[str, str] = {}
    failures: dict[str, str] = {}
    frames: dict[str, pl.DataFrame] = {}
    read_problems: dict[str, list[RowProblem]] = {}
    define = None

    tables: list[tuple[str, Path]] = []
    for name in sorted(n for n in raw.files if n != MANIFEST):
        path = raw.decrypt_to(name, plain, keys)  # the sponsor's bytes, verified, in a private temp folder
        if name.lower() in DEFINE_NAMES:
            try:
                define = read_define(path)
                placements[name] = f"{name} -> raw zone; its variable types, lengths and codelists validate the other domains"
            except ValueError as exc:  # metadata only: report it and fall back to the SDTM class rules
                placements[name] = f"{name} -> raw zone only, not used: {exc}; other domains follow SDTM class rules"
            continue
        if path.suffix.lower() not in SUPPORTED:
            placements[name] = f"{name} -> raw zone only (not a table: {path.suffix or 'no extension'})"
            continue
        tables.append((name, path))
    for (name, _path), read in zip(tables, _in_parallel(_read_or_error, [path for _name, path in tables]), strict=True):
        if isinstance(read, UnreadableFileError):
            failures[name] = str(read)
        else:
            frames[name], read_problems[name] = read

    failures |= studyid_mismatches(frames, study)
    targets, plan_failures = plan_files({f: df for f, df in frames.items() if f not in failures}, define)
    failures |= plan_failures
    targets = [t for t in targets if not set(t.files) & set(failures)]

    # DM first: the other subject-level files are checked against the subjects it passes; they are
    # then independent of each other and validated in parallel.
    targets.sort(key=lambda t: (t.name != "dm", t.name))
    # The parent records SUPP-- rows must match; built only when the drop has a supplemental file.
    parents = {t.code: pl.concat([frames[f] for f in t.files], how="diagonal_relaxed")
               for t in targets if t.code and t.kind in ("domain", "other")} \
        if any(t.kind == "supplemental" for t in targets) else {}
    results: dict[str, tuple[Target, ValidationResult | None, pl.DataFrame, pl.DataFrame]] = {}
    subjects = _Subjects()
    for batch in ([t for t in targets if t.name == "dm"], [t for t in targets if t.name != "dm"]):
        for target in batch:
            if target.spec is not None:
                rows = sum(frames[f].height for f in target.files)
                log(f"[{tenant}/{study}] validating {' + '.join(target.files)} ({rows:,} rows) as {target.name}")
        checked = _in_parallel(partial(_check_target, frames=frames, read_problems=read_problems, parents=parents,
                                       subjects=subjects), batch)
        for target, (combined, rowmap, res) in zip(batch, checked, strict=True):
            if isinstance(res, UnreadableFileError):  # a required column is missing
                failures[" + ".join(target.files)] = str(res)
                continue
            results[target.name] = (target, res, combined, rowmap)
            if target.name == "dm":
                subjects = _Subjects.of_dm(res, " + ".join(target.files))
    for target in targets:
        for file in target.files:
            placements[file] = target.describe(file)
    for file, why in failures.items():
        placements[file] = f"{file} -> rejected: {why}"

    staged = final_dir.with_name(f"{final_dir.name}.next")
    shutil.rmtree(staged, ignore_errors=True)
    write_to = staged if not failures else None
    outcomes = _write_outcomes(results, raw, tenant, study, drop_id, write_to, final_dir, quarantine_dir, keys)
    if write_to is not None:
        present = {d: (outcomes[d].rows_passed if d in outcomes else None) for d in DOMAINS}
        for domain, spec in DOMAINS.items():
            if domain not in outcomes:
                target = staged / f"{domain}.parquet"
                outcomes[domain] = DomainOutcome(domain, [], 0, 0, 0, final_dir / f"{domain}.parquet",
                                                 write_parquet_atomic(empty_domain_frame(spec), target), {})
        write_domains_index(staged, tenant, study, present)
        _swap_in(staged, final_dir)
    return IngestReport(tenant, study, drop_id, raw.version, outcomes, placements, failures, time.perf_counter() - start)


def _write_outcomes(results, raw: RawVersion, tenant: str, study: str, drop_id: str, staged: Path | None,
                    final_dir: Path, quarantine_dir: Path, keys: KeyService) -> dict[str, DomainOutcome]:
    """Quarantine files (encrypted: they hold the sponsor's rejected text) always; bronze files into
    ``staged`` only when the drop is taken (written in parallel: they are independent)."""
    outcomes: dict[str, DomainOutcome] = {}
    bronze: dict[str, pl.DataFrame] = {}
    for name, (target, res, combined, rowmap) in results.items():
        inputs = {f: raw.files[f] for f in target.files}
        if res is None:  # an unrecognised table: kept as read, with its provenance
            if staged is not None:
                bronze[name] = _back_to_files(combined, rowmap).select(
                    pl.lit(tenant).alias("tenant_id"), pl.lit(study).alias("study_id"), pl.all())
            outcomes[name] = DomainOutcome(name, target.files, combined.height, combined.height, 0,
                                           final_dir / f"{name}.parquet", None, inputs)
            continue
        q_path = None
        if res.rows_quarantined:
            q_path = quarantine_dir / f"{name}.parquet"
            reasons = _back_to_files(res.reasons.drop("file"), rowmap, "row").rename({SOURCE_FILE: "file"})
            for frame, path in ((_back_to_files(res.quarantined, rowmap), q_path),
                                (reasons.select("file", "row", "column", "rule", "detail"),
                                 quarantine_dir / f"{name}_reasons.parquet")):
                write_encrypted_parquet(frame, path, tenant, keys)
        if staged is not None:
            bronze[name] = to_bronze_frame(_back_to_files(res.passed, rowmap), target.spec, tenant, study, drop_id)
        outcomes[name] = DomainOutcome(name, target.files, res.rows_in, res.rows_passed, res.rows_quarantined,
                                       final_dir / f"{name}.parquet", None, inputs, q_path, res.expectations)
    if staged is not None:
        shas = _in_parallel(lambda item: write_parquet_atomic(item[1], staged / f"{item[0]}.parquet"), list(bronze.items()))
        for name, sha in zip(bronze, shas, strict=True):
            outcomes[name].bronze_sha256 = sha
    return outcomes
