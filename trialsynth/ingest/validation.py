"""Per-domain validation: the domain's expectation suite, run as polars expressions, and the split
into passed vs quarantined rows.

Suites are derived from :mod:`trialsynth.domains` (required columns, unique keys, ISO 8601 dates,
numeric ranges, controlled terms, define.xml lengths) by :func:`suite_rules`. Each rule carries the
name of the Great Expectations expectation it is (``expect_column_values_to_be_between`` ...), and a
failing row goes to quarantine with one reason per (file, row, column, rule) under that name. Type
coercion failures (text in a numeric column, ``nan``/``inf``) are found while typing, because a
value that cannot be typed would otherwise reach the suite only as a null.

Why not GX itself on the rows: on a 2.7-million-row drop, GX took 5.5 s per run (a pandas copy of
each file, then a boolean-mask copy of the frame per expectation) plus 6 s to import, more than
the rest of the ingest together, so the ingest missed its 2x-of-DuckDB-COPY goal
(benchmarks/bench_ingest.py). The same rules as vectorised polars expressions cost one pass per
file. :func:`build_suite` still gives the suite as a GX ``ExpectationSuite`` (the same rules, for a
sponsor to run on their side or for Data Docs), and a test checks that GX and :func:`run_suite`
flag the same rows with the same reasons. ``great_expectations`` is imported only there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from trialsynth.domains import DomainSpec
from trialsynth.ingest.dates import ISO_8601, calendar_problems
from trialsynth.ingest.readers import SOURCE_ROW, RowProblem, UnreadableFileError

POLARS_TYPES: dict[str, pl.DataType] = {"str": pl.String(), "int": pl.Int64(), "float": pl.Float64(), "date": pl.String()}
REASON_SCHEMA = {"file": pl.String, "row": pl.Int64, "column": pl.String, "rule": pl.String, "detail": pl.String}


@dataclass
class ValidationResult:
    """Outcome of validating one file of one domain."""

    domain: str
    file: str
    rows_in: int
    passed: pl.DataFrame  # typed canonical columns + extras + _source_row
    quarantined: pl.DataFrame  # original values as text + _source_row + _reasons (JSON list)
    reasons: pl.DataFrame  # one row per (row, column, rule): file, row, column, rule, detail
    expectations: list[dict[str, Any]] = field(default_factory=list)  # per rule: success, unexpected_count

    @property
    def rows_passed(self) -> int:
        return self.passed.height

    @property
    def rows_quarantined(self) -> int:
        return self.quarantined.height


@dataclass(frozen=True)
class Rule:
    """One expectation of a domain's suite: a GX expectation type and its arguments."""

    expectation: str  # GX snake-case type, also the quarantine rule name
    columns: tuple[str, ...]
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def column(self) -> str:
        return ",".join(self.columns)


def coerce_to_spec(df: pl.DataFrame, spec: DomainSpec, file_name: str) -> tuple[pl.DataFrame, list[RowProblem]]:
    """Return (typed frame, typing problems). Raises when required columns are absent.

    Each numeric column is parsed once; a value that does not parse, or parses to a non-finite
    number ("nan", "inf", "1e400": no range check or SQL cast handles them), becomes null and a
    ``type:<type>`` problem.
    """
    missing = [c.name for c in spec.columns if c.required and c.name not in df.columns]
    if missing:
        raise UnreadableFileError(Path(file_name), f"required column(s) {', '.join(missing)} missing for domain "
                                  f"{spec.name.upper()} (columns present: {', '.join(c for c in df.columns if c != SOURCE_ROW)})")
    numeric = [c for c in spec.columns if c.name in df.columns and POLARS_TYPES[c.type] != pl.String]
    parsed = df.select(
        (pl.col(c.name).str.strip_chars() if df.schema[c.name] == pl.String else pl.col(c.name))
        .cast(POLARS_TYPES[c.type], strict=False) for c in numeric)
    # a second, float-only pass: one expression with the parse inside when/then would parse twice
    parsed = parsed.with_columns(pl.when(pl.col(c.name).is_finite()).then(pl.col(c.name)).alias(c.name)
                                 for c in numeric if c.type == "float")
    typed_cols = [pl.lit(parsed[c.name]) if c.name in parsed.columns
                  else pl.lit(None, dtype=POLARS_TYPES[c.type]).alias(c.name) if c.name not in df.columns
                  else _as_text(pl.col(c.name), df.schema[c.name]).alias(c.name) for c in spec.columns]
    extras = [_as_text(pl.col(c), df.schema[c]) for c in df.columns if c not in spec.column_names and c != SOURCE_ROW]
    typed = df.select(*typed_cols, *extras, pl.col(SOURCE_ROW))
    problems: list[RowProblem] = []
    for col in numeric:  # per-column detail only for the few bad rows
        failed = df[col.name].is_not_null() & parsed[col.name].is_null()
        if failed.any():
            bad = df.filter(failed)
            problems += [RowProblem(r, col.name, f"type:{col.type}", f"value {v!r} is not a valid {col.type}")
                         for r, v in zip(bad[SOURCE_ROW].to_list(), bad[col.name].cast(pl.String).to_list(), strict=True)]
    return typed, problems


def _as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return expr
    if dtype.is_float():
        # 701.0 from a SAS numeric SITEID should read "701", not "701.0"
        return pl.when(expr == expr.round(0)).then(expr.cast(pl.Int64, strict=False).cast(pl.String)).otherwise(expr.cast(pl.String))
    if dtype in (pl.Date, pl.Datetime):
        return expr.dt.to_string("iso")
    return expr.cast(pl.String)


@cache
def suite_rules(spec: DomainSpec) -> tuple[Rule, ...]:
    """The domain's expectation suite, in order: the one list both :func:`run_suite` and
    :func:`build_suite` are made from."""
    rules: list[Rule] = []
    for col in spec.columns:
        one = (col.name,)
        if col.required:
            rules += [Rule("expect_column_to_exist", one), Rule("expect_column_values_to_not_be_null", one)]
        if col.min is not None or col.max is not None:
            rules.append(Rule("expect_column_values_to_be_between", one, (("min_value", col.min), ("max_value", col.max))))
        if col.allowed:
            rules.append(Rule("expect_column_values_to_be_in_set", one, (("value_set", tuple(col.allowed)),)))
        if col.max_length is not None and col.type == "str":
            rules.append(Rule("expect_column_value_lengths_to_be_between", one, (("max_value", col.max_length),)))
        if col.type == "date":
            rules.append(Rule("expect_column_values_to_match_regex", one, (("regex", ISO_8601),)))
    if len(spec.key) == 1:
        rules.append(Rule("expect_column_values_to_be_unique", spec.key))
    elif spec.key:
        rules.append(Rule("expect_compound_columns_to_be_unique", spec.key))
    return tuple(rules)


@cache
def build_suite(spec: DomainSpec) -> Any:
    """The domain's suite as a GX ``ExpectationSuite`` (the rules :func:`run_suite` applies)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"trialsynth_{spec.name}")
    for rule in suite_rules(spec):
        expectation = getattr(gxe, "".join(w.title() for w in rule.expectation.split("_")))
        args = {"column_list": list(rule.columns)} if len(rule.columns) > 1 else {"column": rule.columns[0]}
        kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in rule.kwargs}
        suite.add_expectation(expectation(**args, **kwargs))
    return suite


def _unexpected(rule: Rule) -> pl.Expr:
    """True on the rows that fail ``rule`` (on the typed frame). Null values fail only the not-null
    rule, and a compound key whose values are all null is not checked (as in GX)."""
    kw, col = dict(rule.kwargs), pl.col(rule.columns[0])
    match rule.expectation:
        case "expect_column_to_exist":  # coerce_to_spec already refused a file without it
            return pl.lit(False)
        case "expect_column_values_to_not_be_null":
            return col.is_null()
        case "expect_column_values_to_be_between":
            low, high = kw["min_value"], kw["max_value"]
            return ((col < low) if low is not None else pl.lit(False)) | ((col > high) if high is not None else pl.lit(False))
        case "expect_column_values_to_be_in_set":
            return ~col.is_in(list(kw["value_set"]))
        case "expect_column_value_lengths_to_be_between":
            return col.str.len_chars() > kw["max_value"]
        case "expect_column_values_to_match_regex":
            return ~col.str.contains(kw["regex"])
        case "expect_column_values_to_be_unique":
            return col.is_duplicated()
        case "expect_compound_columns_to_be_unique":
            keys = [pl.col(c) for c in rule.columns]
            return pl.struct(keys).is_duplicated() & pl.any_horizontal(k.is_not_null() for k in keys)
    raise ValueError(f"rule {rule.expectation!r} has no polars implementation")


def _shown(value: Any) -> str:
    """A value as the reason shows it (as GX did: text quoted, a missing value as nan)."""
    return "nan" if value is None else repr(value)


def run_suite(typed: pl.DataFrame, spec: DomainSpec) -> tuple[list[RowProblem], list[dict[str, Any]]]:
    """Run the domain's suite on ``typed`` (the output of :func:`coerce_to_spec`, with
    ``_source_row``); return one problem per failing (row, rule) and a summary per rule.

    One polars pass computes a flag column per rule; rows and values are collected in Python only
    for the rules that failed.
    """
    rules = suite_rules(spec)
    flags = typed.select(pl.col(SOURCE_ROW), *(_unexpected(r).fill_null(False).alias(str(i)) for i, r in enumerate(rules)))
    counts = flags.select(pl.col(str(i)).sum() for i in range(len(rules))).row(0)
    problems: list[RowProblem] = []
    summary: list[dict[str, Any]] = []
    for i, (rule, count) in enumerate(zip(rules, counts, strict=True)):
        summary.append({"expectation": rule.expectation, "column": rule.column, "success": not count,
                        "unexpected_count": int(count)})
        if not count:
            continue
        bad = typed.filter(flags[str(i)]).select(SOURCE_ROW, *rule.columns)
        for row, *values in bad.iter_rows():
            shown = ", ".join(f"{c}={_shown(v)}" for c, v in zip(rule.columns, values, strict=True))
            problems.append(RowProblem(row, rule.column, rule.expectation, f"unexpected value {shown}"))
    return problems, summary


def validate_frame(df: pl.DataFrame, spec: DomainSpec, file_name: str, read_problems: list[RowProblem] | None = None) -> ValidationResult:
    """Type ``df`` to ``spec``, run the suite, and split passed from quarantined rows."""
    typed, type_problems = coerce_to_spec(df, spec, file_name)
    suite_problems, summary = run_suite(typed, spec)
    dates = calendar_problems(typed, [c.name for c in spec.columns if c.type == "date"])
    problems = [*(read_problems or []), *type_problems, *suite_problems, *dates]
    reasons = pl.DataFrame(  # built by column: a drop without DM has a reason for every subject-level row
        {"file": [file_name] * len(problems), "row": [p.row for p in problems], "column": [p.column for p in problems],
         "rule": [p.rule for p in problems], "detail": [p.detail for p in problems]},
        schema=REASON_SCHEMA,
    ).sort("row", "column", "rule", nulls_last=True)
    bad_rows = reasons.group_by("row").agg(
        pl.concat_str(
            pl.lit("["), pl.struct("column", "rule", "detail").struct.json_encode().str.join(","), pl.lit("]")
        ).alias("_reasons")
    )
    is_bad = pl.col(SOURCE_ROW).is_in(bad_rows["row"].implode())
    quarantined = df.filter(is_bad).join(bad_rows, left_on=SOURCE_ROW, right_on="row", how="inner").sort(SOURCE_ROW)
    quarantined = quarantined.with_columns(  # original values as text: nothing the sponsor sent is lost
        _as_text(pl.col(c), quarantined.schema[c]) for c in df.columns if c != SOURCE_ROW)
    passed = typed.filter(~is_bad)  # a filter keeps the rows' order: no join and sort of the whole file
    if not passed[SOURCE_ROW].is_sorted():
        passed = passed.sort(SOURCE_ROW)
    return ValidationResult(spec.name, file_name, df.height, passed, quarantined, reasons, summary)
