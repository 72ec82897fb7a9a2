"""Study-level quality tolerance limits (QTLs) as a table the warehouse joins to its KRIs.

A QTL puts a limit on the study-wide rate of one key risk indicator of ``mart_kri_qtl``, in that
KRI's unit (``KRIS``): shares as fractions (0.25 = 25 %), event rates per 1,000 subject-days,
queries per 100 CRF pages, reporting time in days.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import polars as pl

# KRI name -> unit of mart_kri_qtl.rate (dbt_project/models/marts/mart_kri_qtl.sql defines them;
# tests/test_marts_kri.py checks the two agree).
KRIS: dict[str, str] = {
    "ae_rate": "per 1,000 subject-days",
    "sae_rate": "per 1,000 subject-days",
    "important_pd_rate": "per 1,000 subject-days",
    "non_important_pd_rate": "per 1,000 subject-days",
    "discontinuation_rate": "share of randomized subjects",
    "query_rate": "per 100 CRF pages entered",
    "query_open_30d_rate": "share of queries",
    "late_crf_entry_rate": "share of CRF pages",
    "screen_fail_rate": "share of screened subjects",
    "ae_reporting_days": "mean days",
}
QTL_SCHEMA = {"qtl_name": pl.String, "kri": pl.String, "qtl_limit": pl.Float64, "direction": pl.String,
              "config_file": pl.String}


class QTLSpec(Protocol):
    """What a QTL needs (``trialsynth.study_config.QTLConfig`` has it)."""

    name: str
    kri: str
    limit: float
    direction: str


def qtl_table(qtls: Sequence[QTLSpec], config_file: str | None = None) -> pl.DataFrame:
    """One row per QTL: ``qtl_name, kri, qtl_limit, direction, config_file`` (0 rows when none).

    Raises ValueError (naming ``config_file`` and the QTL) for an unknown KRI, a direction other
    than above/below, a negative limit or a share above 1, and for duplicated names or a second
    limit on the same KRI (each KRI row of the mart carries one limit).
    """
    where = f"{config_file}: " if config_file else ""
    rows = []
    for q in qtls:
        if q.kri not in KRIS:
            raise ValueError(f"{where}qtl {q.name!r}: unknown kri {q.kri!r}; expected one of {', '.join(KRIS)}")
        if q.direction not in ("above", "below"):
            raise ValueError(f"{where}qtl {q.name!r}: direction must be 'above' or 'below', got {q.direction!r}")
        if q.limit < 0 or (KRIS[q.kri].startswith("share") and q.limit > 1):
            raise ValueError(f"{where}qtl {q.name!r}: limit {q.limit} is outside the range of {q.kri} "
                             f"({KRIS[q.kri]}{', a fraction in [0, 1]' if KRIS[q.kri].startswith('share') else ', >= 0'})")
        rows.append({"qtl_name": q.name, "kri": q.kri, "qtl_limit": float(q.limit), "direction": q.direction,
                     "config_file": config_file})
    for column in ("qtl_name", "kri"):
        values = [r[column] for r in rows]
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{where}more than one qtl with {column} {', '.join(map(repr, repeated))}")
    return pl.DataFrame(rows, schema=QTL_SCHEMA)
