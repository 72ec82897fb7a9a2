"""Checks across rows and files of one drop, run before each file is validated.

- **Identity**: every ``STUDYID`` of every file equals the study folder the drop came in; a drop that
  says it is another study (or whose files disagree) is rejected whole — its rows would otherwise
  land under the wrong study.
- **Subjects**: a subject-level row (AE, VS, LB, SUPPAE, ...) needs its subject among the DM rows
  that passed validation. When a DM row is quarantined, its subject's rows in every other file are
  quarantined too ("subject quarantined in DM"), and rows of a subject the drop's DM does not have
  are quarantined as orphans ("subject not in DM"): the star schema never sees a child without its
  parent, and nothing is dropped (quarantine keeps the rows with their reasons). A drop is a full
  snapshot of the study, so a drop without DM quarantines every subject-level row.
- **Natural keys** of findings (``USUBJID + VISITNUM + --TESTCD``, refined by the time point,
  position, location, specimen and category qualifiers the file has): when two rows share a key and
  their results differ, every version is quarantined, the reason naming the key; when they are
  exact repeats, the first is kept and the repeats are quarantined as duplicates of it.
"""

from __future__ import annotations

import polars as pl

from trialsynth.ingest.readers import SOURCE_ROW, RowProblem

_QUALIFIERS = ("CAT", "SCAT", "SPEC", "LOC", "POS", "TPTREF", "TPTNUM", "TPT")
_RESULTS = ("ORRES", "STRESC", "STRESN", "STAT")
_FIRST_ROWS = 5


def _text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String).str.strip_chars()


def studyid_mismatches(frames: dict[str, pl.DataFrame], study: str) -> dict[str, str]:
    """file -> message, for each file carrying a STUDYID other than ``study``."""
    out: dict[str, str] = {}
    for file, df in sorted(frames.items()):
        if "STUDYID" not in df.columns or (df["STUDYID"].cast(pl.String) == study).all():  # fast path: all as expected
            continue
        wrong = df.select(SOURCE_ROW, _text("STUDYID").alias("v")).filter(pl.col("v").is_not_null() & (pl.col("v") != study))
        if wrong.height:
            values = sorted(set(wrong["v"].to_list()))
            rows = wrong[SOURCE_ROW].head(_FIRST_ROWS).to_list()
            out[file] = (f"{file}: STUDYID {', '.join(map(repr, values))} in {wrong.height:,} row(s) (first rows "
                         f"{rows}) differs from the study folder {study!r}; every file of a drop must carry its study's "
                         "STUDYID — the drop is rejected (fix the extract, or land it under its own study folder)")
    return out


def subject_problems(df: pl.DataFrame, passed: set[str], quarantined: set[str], dm_file: str | None) -> list[RowProblem]:
    """Rows of ``df`` whose USUBJID is quarantined in DM or absent from it."""
    if "USUBJID" not in df.columns or df["USUBJID"].cast(pl.String).is_in(list(passed)).all():  # fast path: all known
        return []
    subj = df.select(SOURCE_ROW, _text("USUBJID").alias("s")).filter(pl.col("s").is_not_null() & ~pl.col("s").is_in(list(passed)))
    problems = []
    for row, s in zip(subj[SOURCE_ROW].to_list(), subj["s"].to_list(), strict=True):
        if s in quarantined:
            problems.append(RowProblem(row, "USUBJID", "subject_quarantined_in_dm",
                                       f"subject {s} quarantined in DM ({dm_file}): its rows are held back with it"))
        else:
            where = f"not in DM ({dm_file})" if dm_file else "not in DM (the drop has no DM)"
            problems.append(RowProblem(row, "USUBJID", "subject_not_in_dm", f"subject {s} {where}"))
    return problems


def domain_value_problems(df: pl.DataFrame, code: str) -> list[RowProblem]:
    """Rows whose DOMAIN column names another domain than the file was taken as (``ae.csv`` with CM rows)."""
    if "DOMAIN" not in df.columns or (df["DOMAIN"].cast(pl.String) == code).all():  # fast path: all as expected
        return []
    wrong = df.select(SOURCE_ROW, _text("DOMAIN").alias("d")).filter(pl.col("d").is_not_null() & (pl.col("d").str.to_uppercase() != code))
    return [RowProblem(r, "DOMAIN", "domain_mismatch", f"DOMAIN {d!r} in a file taken as {code}")
            for r, d in zip(wrong[SOURCE_ROW].to_list(), wrong["d"].to_list(), strict=True)]


def natural_key_problems(df: pl.DataFrame, prefix: str) -> list[RowProblem]:
    """Conflicting and repeated findings rows of one ``prefix`` (``VS``, ``LB``, ...)."""
    testcd = f"{prefix}TESTCD"
    if not {"USUBJID", "VISITNUM", testcd} <= set(df.columns):
        return []
    key = ["USUBJID", "VISITNUM", testcd, *(f"{prefix}{q}" for q in _QUALIFIERS if f"{prefix}{q}" in df.columns)]
    results = [f"{prefix}{r}" for r in _RESULTS if f"{prefix}{r}" in df.columns]
    # Cheap first pass over every row: most keys are unique, so only rows whose key hash repeats
    # (every row of a repeated key, and the rare hash collision) are looked at exactly.
    keys = df.select(_text(c).alias(c) for c in key)
    repeated = keys.select(pl.all_horizontal(pl.col("USUBJID", "VISITNUM", testcd).is_not_null())
                           & pl.struct(key).hash().is_duplicated()).to_series()
    frame = df.filter(repeated).select(SOURCE_ROW, *(_text(c).alias(c) for c in key),
                                       *(_text(c).fill_null("").alias(c) for c in results))
    frame = frame.filter(pl.len().over(key) > 1)
    frame = frame.with_columns(
        pl.len().over(key).alias("_n"),
        (pl.struct(results).n_unique().over(key) if results else pl.lit(1)).alias("_versions"),
        pl.col(SOURCE_ROW).min().over(key).alias("_first"),
        pl.col(SOURCE_ROW).sort().implode().over(key).alias("_rows"),
    )
    problems = []
    for rec in frame.iter_rows(named=True):
        named = ", ".join(f"{c}={rec[c]}" for c in key)
        rows = rec["_rows"][:_FIRST_ROWS]
        if rec["_versions"] > 1:
            problems.append(RowProblem(rec[SOURCE_ROW], testcd, "natural_key_conflict",
                                       f"natural key {named} has {rec['_n']} rows with different results (rows {rows}): "
                                       "every version is quarantined until the sponsor says which is right"))
        elif rec[SOURCE_ROW] != rec["_first"]:
            problems.append(RowProblem(rec[SOURCE_ROW], testcd, "duplicate_record",
                                       f"repeat of row {rec['_first']} (same natural key {named} and results)"))
    return problems


def supplemental_parent_problems(df: pl.DataFrame, parents: dict[str, pl.DataFrame]) -> list[RowProblem]:
    """SUPP-- rows whose parent record (RDOMAIN, USUBJID, IDVAR = IDVARVAL) is not in the drop.

    ``parents`` maps an upper-case domain code to that domain's rows as read (text). Parents the
    drop does not carry at all are not checked here (the file report says the domain is absent).
    """
    need = {"RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL"}
    if not need <= set(df.columns):
        return []
    rows = df.select(SOURCE_ROW, *(_text(c).alias(c) for c in need))
    problems = []
    for (rdomain, idvar), group in rows.group_by(["RDOMAIN", "IDVAR"]):
        parent = parents.get(str(rdomain or "").upper())
        if parent is None:
            continue
        if idvar and idvar not in parent.columns:
            problems += [RowProblem(r, "IDVAR", "supp_parent_missing", f"{rdomain} has no variable {idvar}")
                         for r in group[SOURCE_ROW].to_list()]
            continue
        cols = [_text("USUBJID").alias("USUBJID")]
        if idvar:
            cols.append(pl.col(idvar).cast(pl.String).str.strip_chars().str.replace(r"\.0$", "").alias("IDVARVAL"))
        keys = parent.select(cols).unique()
        on = ["USUBJID", "IDVARVAL"] if idvar else ["USUBJID"]
        orphans = group.with_columns(pl.col("IDVARVAL").str.replace(r"\.0$", "")).join(keys, on=on, how="anti")
        problems += [RowProblem(r, "IDVARVAL", "supp_parent_missing",
                                f"no {rdomain} record for USUBJID={u}" + (f", {idvar}={v}" if idvar else ""))
                     for r, u, v in zip(orphans[SOURCE_ROW].to_list(), orphans["USUBJID"].to_list(),
                                        orphans["IDVARVAL"].to_list(), strict=True)]
    return problems
