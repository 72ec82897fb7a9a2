"""ISO 8601 dates as SDTM sends them: shape *and* calendar.

SDTM ``--DTC`` values are ISO 8601 text of any precision: ``2025``, ``2025-03``, ``2025-03-14``,
``2025-03-14T09:30``, ``2025-03-14T09:30:15.5``, and SDTM's form for a missing middle component
(``2025---14``: day known, month not; ``2025-03-14T-:30``: minute known, hour not). All of these are
valid and stay as sent in bronze, so their precision is kept (the marts keep the text beside a typed
date that is NULL for partial values).

A value of the right shape can still name no real instant: ``2025-02-30``, ``2025-13-01``,
``2025-02-29`` (not a leap year), ``2025-04-31``, ``2025-00-10``, ``T24:00``. The regex alone let
those through (they became NULL in the marts); :func:`calendar_problems` finds them so they are
quarantined with rule ``iso8601_calendar``. Vectorised with polars: it runs on every date cell
(complete dates by a date parse, the rest by one regex pass).
"""

from __future__ import annotations

import polars as pl

from trialsynth.ingest.readers import SOURCE_ROW, RowProblem

# Shape only (the GX suite checks it): year, then optional month/day/time components; '-' stands for
# an unknown component (SDTM IG 4.1.4.4). 'T' or a space before the time, as exports differ.
ISO_8601 = (
    r"^\d{4}(?:-(?:\d{2}|-)(?:-(?:\d{2}|-)(?:[T ](?:\d{2}|-)(?::(?:\d{2}|-)(?::\d{2}(?:\.\d+)?)?)?)?)?)?$"
)
_PARTS = (r"^(?<y>\d{4})(?:-(?<mo>\d{2}|-))?(?:-(?<d>\d{2}|-))?(?:[T ](?<h>\d{2}|-))?(?::(?<mi>\d{2}|-))?"
          r"(?::(?<s>\d{2}))?")
RULE = "iso8601_calendar"


def calendar_problems(df: pl.DataFrame, columns: list[str]) -> list[RowProblem]:
    """One problem per cell whose ISO 8601 shape is fine but whose date or time does not exist.

    ``df`` holds the columns as text plus ``_source_row``; values that do not even match the shape
    are left to the shape check (they are reported once, by it). One regex pass per column: the
    components come out of a single ``extract_groups``.
    """
    problems: list[RowProblem] = []
    for column in columns:
        if column not in df.columns:
            continue
        value = pl.col(column).cast(pl.String)
        # Fast path for the common precision: a 10-byte value that parses as %Y-%m-%d is a real date.
        # Only the rest (partial dates, date-times, impossible days) goes through the regex below.
        real_day = (value.str.len_bytes() == 10) & value.str.to_date("%Y-%m-%d", strict=False).is_not_null()
        cells = df.select(pl.col(SOURCE_ROW), value.str.strip_chars().alias("v"), real_day.fill_null(False).alias("ok"))
        cells = cells.filter(~pl.col("ok"))
        cells = cells.filter(pl.col("v").str.len_bytes() >= 7)  # a year alone is always a valid date
        if cells.is_empty():
            continue
        parts = cells.with_columns(pl.col("v").str.extract_groups(_PARTS).alias("p")).unnest("p")
        year, month, day, hour, minute, second = (pl.col(c).cast(pl.Int32, strict=False) for c in ("y", "mo", "d", "h", "mi", "s"))
        leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
        month_days = (
            pl.when(month == 2).then(pl.when(leap).then(29).otherwise(28))
            .when(month.is_in([4, 6, 9, 11])).then(30)
            .otherwise(31)
        )
        bad = (
            ~month.is_between(1, 12)
            | (day < 1) | (day > month_days)
            | (hour > 23) | (minute > 59) | (second > 59)
        ).fill_null(False) & pl.col("v").str.contains(ISO_8601)
        flagged = parts.filter(bad)
        problems += [
            RowProblem(row, column, RULE, f"{value!r} is not a calendar date/time (no such day, month or time)")
            for row, value in zip(flagged[SOURCE_ROW].to_list(), flagged["v"].to_list(), strict=True)
        ]
    return problems
