"""Raw-zone version -> validated bronze Parquet + quarantine, as one plain function.

Used by the Dagster bronze asset and by the ingest benchmark; no Dagster imports here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from trialsynth.domains import DOMAINS, domain_for_file_stem
from trialsynth.ingest.bronze import (
    bronze_dir,
    empty_domain_frame,
    to_bronze_frame,
    write_domains_index,
    write_parquet_atomic,
)
from trialsynth.ingest.raw_zone import MANIFEST, RawVersion
from trialsynth.ingest.readers import SUPPORTED, UnreadableFileError, read_file
from trialsynth.ingest.validation import ValidationResult, validate_frame


@dataclass
class DomainOutcome:
    domain: str
    file: str | None
    rows_in: int
    rows_passed: int
    rows_quarantined: int
    bronze_path: Path
    bronze_sha256: str
    input_sha256: str | None
    quarantine_path: Path | None = None
    expectations: list[dict] = field(default_factory=list)


@dataclass
class IngestReport:
    tenant: str
    study: str
    drop_id: str
    raw_version: int
    domains: dict[str, DomainOutcome]
    other_files: dict[str, Path]  # tabular files of domains trialsynth does not model, kept as-read
    raw_only: list[str]  # files kept only in the raw zone (define.xml, PDFs ...)
    failures: dict[str, str]  # file -> why it could not be ingested
    seconds: float

    @property
    def rows_landed(self) -> int:
        return sum(o.rows_passed for o in self.domains.values())

    @property
    def rows_quarantined(self) -> int:
        return sum(o.rows_quarantined for o in self.domains.values())


def ingest_raw_version(raw: RawVersion, lake_dir: Path, log=print) -> IngestReport:
    """Read, validate and write every file of a raw-zone version; never raises for one bad file
    (the caller decides: the Dagster asset fails the run naming each file in ``failures``)."""
    start = time.perf_counter()
    tenant, study, drop_id = raw.drop.tenant, raw.drop.study, raw.drop.drop_id
    out_dir = bronze_dir(lake_dir, tenant, study)
    quarantine_dir = lake_dir / tenant / study / "quarantine" / f"{drop_id}-v{raw.version}"
    by_domain: dict[str, str] = {}
    failures: dict[str, str] = {}
    other: dict[str, Path] = {}
    raw_only: list[str] = []
    results: dict[str, tuple[ValidationResult, str]] = {}

    tabular: list[tuple[str, Path]] = []
    for name in sorted(raw.files):
        if name == MANIFEST:
            continue
        path = raw.file_path(name)
        spec = domain_for_file_stem(path.stem)
        if path.suffix.lower() not in SUPPORTED:
            raw_only.append(name)
        elif spec is not None and spec.name in by_domain:
            failures[name] = f"{name}: domain {spec.name.upper()} already delivered as {by_domain[spec.name]}; send one file per domain"
        else:
            if spec is not None:
                by_domain[spec.name] = name
            tabular.append((name, path))

    def process(name: str, path: Path) -> None:
        spec = domain_for_file_stem(path.stem)
        try:
            df, read_problems = read_file(path)
            if spec is None:
                other[name] = out_dir / "other" / f"{path.stem.lower()}.parquet"
                write_parquet_atomic(df.with_columns(pl.lit(tenant).alias("tenant_id"), pl.lit(study).alias("study_id")), other[name])
                return
            log(f"[{tenant}/{study}] validating {name} ({df.height:,} rows) as {spec.name.upper()}")
            results[spec.name] = (validate_frame(df, spec, name, read_problems), raw.files[name])
        except UnreadableFileError as exc:
            failures[name] = str(exc)

    # Sequential on purpose: threads gave no speed-up (GX validation holds the GIL) and worker
    # processes would each pay the multi-second great_expectations import.
    for name, path in tabular:
        process(name, path)

    outcomes: dict[str, DomainOutcome] = {}
    present: dict[str, int | None] = {}
    for domain, spec in DOMAINS.items():
        target = out_dir / f"{domain}.parquet"
        if domain in results:
            res, input_sha = results[domain]
            frame = to_bronze_frame(res.passed, spec, tenant, study, drop_id, res.file)
            q_path = None
            if res.rows_quarantined:
                q_path = quarantine_dir / f"{domain}.parquet"
                quarantine = res.quarantined.with_columns(pl.lit(res.file).alias("_source_file"))
                write_parquet_atomic(quarantine, q_path)
                write_parquet_atomic(res.reasons, quarantine_dir / f"{domain}_reasons.parquet")
            sha = write_parquet_atomic(frame, target)
            present[domain] = frame.height
            outcomes[domain] = DomainOutcome(domain, res.file, res.rows_in, res.rows_passed, res.rows_quarantined,
                                             target, sha, input_sha, q_path, res.expectations)
        elif domain in by_domain or any(domain_for_file_stem(Path(f).stem) is spec for f in failures):
            continue  # its file failed: keep the previous bronze file untouched
        else:
            sha = write_parquet_atomic(empty_domain_frame(spec), target)
            present[domain] = None
            outcomes[domain] = DomainOutcome(domain, None, 0, 0, 0, target, sha, None)
    write_domains_index(lake_dir, tenant, study, present)
    return IngestReport(tenant, study, drop_id, raw.version, outcomes, other, raw_only, failures,
                        time.perf_counter() - start)
