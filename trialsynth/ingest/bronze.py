"""Bronze: typed Parquet per domain per tenant/study partition, written atomically.

``<lake>/<tenant>/<study>/bronze/<domain>.parquet`` exists for every domain of
:data:`trialsynth.domains.DOMAINS` after an ingest (0 rows with the full schema when the drop did not
contain it), with ``_domains.parquet`` saying which were really present, so downstream SQL never
breaks on an absent domain. Files are zstd-compressed and written to a temp name then renamed, so a
killed run never leaves a half-written file visible.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from trialsynth.domains import DOMAINS, DomainSpec
from trialsynth.hashing import sha256_file
from trialsynth.ingest.readers import SOURCE_ROW
from trialsynth.ingest.validation import POLARS_TYPES

META_COLUMNS = ("_drop_id", "_source_file", SOURCE_ROW)


def write_parquet_atomic(df: pl.DataFrame, path: Path) -> str:
    """Write ``df`` to ``path`` via a temp file + rename; return the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        df.write_parquet(tmp, compression="zstd", statistics=True)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256_file(path)


def empty_domain_frame(spec: DomainSpec) -> pl.DataFrame:
    schema = {"tenant_id": pl.String, "study_id": pl.String}
    schema |= {c.name: POLARS_TYPES[c.type] for c in spec.columns}
    schema |= {"_drop_id": pl.String, "_source_file": pl.String, SOURCE_ROW: pl.Int64}
    return pl.DataFrame(schema=schema)


def to_bronze_frame(passed: pl.DataFrame, spec: DomainSpec, tenant: str, study: str, drop_id: str,
                    file_name: str | None = None) -> pl.DataFrame:
    """Order columns as the bronze contract says: partition, canonical, extras, provenance.
    ``passed`` carries ``_source_file`` (split datasets have several files) unless ``file_name`` is given."""
    if file_name is not None:
        passed = passed.with_columns(pl.lit(file_name).alias("_source_file"))
    extras = [c for c in passed.columns if c not in spec.column_names and c not in META_COLUMNS]
    return passed.select(
        pl.lit(tenant).alias("tenant_id"),
        pl.lit(study).alias("study_id"),
        *spec.column_names,
        *extras,
        pl.lit(drop_id).alias("_drop_id"),
        pl.col("_source_file"),
        pl.col(SOURCE_ROW),
    )


def bronze_dir(lake_dir: Path, tenant: str, study: str) -> Path:
    return lake_dir / tenant / study / "bronze"


def write_domains_index(directory: Path, tenant: str, study: str, rows: dict[str, int | None]) -> str:
    """``_domains.parquet``: which domains the drop really had (rows None = absent)."""
    index = pl.DataFrame(
        {
            "tenant_id": [tenant] * len(DOMAINS),
            "study_id": [study] * len(DOMAINS),
            "domain": list(DOMAINS),
            "present": [rows.get(d) is not None for d in DOMAINS],
            "rows": [rows.get(d) or 0 for d in DOMAINS],
        },
        schema={"tenant_id": pl.String, "study_id": pl.String, "domain": pl.String, "present": pl.Boolean, "rows": pl.Int64},
    )
    return write_parquet_atomic(index, directory / "_domains.parquet")
