"""Per-domain validation with Great Expectations, and the split into passed vs quarantined rows.

Suites are derived from :mod:`trialsynth.domains` (required columns, unique keys, ISO 8601 dates,
numeric ranges, controlled terms) and run by GX against each file. GX reports failing rows by their
``_source_row``; those rows go to quarantine with one reason per (file, row, column, rule). Type
coercion failures (text in a numeric column) are found while typing, before GX runs, because a value
that cannot be typed would otherwise reach GX only as a null.

``great_expectations`` costs seconds to import, so it is imported on first use, never at
Dagster definitions load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache
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
    expectations: list[dict[str, Any]] = field(default_factory=list)  # GX results per expectation

    @property
    def rows_passed(self) -> int:
        return self.passed.height

    @property
    def rows_quarantined(self) -> int:
        return self.quarantined.height


def coerce_to_spec(df: pl.DataFrame, spec: DomainSpec, file_name: str) -> tuple[pl.DataFrame, list[RowProblem]]:
    """Return (typed frame, typing problems). Raises when required columns are absent."""
    missing = [c.name for c in spec.columns if c.required and c.name not in df.columns]
    if missing:
        raise UnreadableFileError(Path(file_name), f"required column(s) {', '.join(missing)} missing for domain "
                                  f"{spec.name.upper()} (columns present: {', '.join(c for c in df.columns if c != SOURCE_ROW)})")
    typed_cols, failed = [], {}
    for col in spec.columns:
        target = POLARS_TYPES[col.type]
        if col.name not in df.columns:
            typed_cols.append(pl.lit(None, dtype=target).alias(col.name))
            continue
        source, expr = df.schema[col.name], pl.col(col.name)
        if target == pl.String:
            typed_cols.append(_as_text(expr, source).alias(col.name))
            continue
        cast = (expr.str.strip_chars() if source == pl.String else expr).cast(target, strict=False)
        # "nan", "inf", "1e400" cast to non-finite floats that no range check or SQL cast handles
        bad = (cast.is_null() | ~cast.is_finite()) if target == pl.Float64 else cast.is_null()
        typed_cols.append(pl.when(bad).then(None).otherwise(cast).alias(col.name))
        failed[col] = expr.is_not_null() & bad
    extras = [_as_text(pl.col(c), df.schema[c]) for c in df.columns if c not in spec.column_names and c != SOURCE_ROW]
    typed = df.select(*typed_cols, *extras, pl.col(SOURCE_ROW))
    problems: list[RowProblem] = []
    if failed:  # one pass to find any typing failure; per-column detail only for the few bad rows
        flags = df.select(pl.col(SOURCE_ROW), *(f.alias(c.name) for c, f in failed.items()))
        bad = df.filter(pl.any_horizontal(*failed.values()))
        for col in failed:
            rows = flags.filter(pl.col(col.name))[SOURCE_ROW]
            values = bad.filter(pl.col(SOURCE_ROW).is_in(rows.implode()))[col.name].cast(pl.String).to_list()
            problems += [RowProblem(r, col.name, f"type:{col.type}", f"value {v!r} is not a valid {col.type}")
                         for r, v in zip(rows.to_list(), values, strict=True)]
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
def build_suite(spec: DomainSpec) -> Any:
    """The GX ExpectationSuite for a domain."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"trialsynth_{spec.name}")
    for col in spec.columns:
        if col.required:
            suite.add_expectation(gxe.ExpectColumnToExist(column=col.name))
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col.name))
        if col.min is not None or col.max is not None:
            suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=col.name, min_value=col.min, max_value=col.max))
        if col.allowed:
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=col.name, value_set=list(col.allowed)))
        if col.max_length is not None and col.type == "str":
            suite.add_expectation(gxe.ExpectColumnValueLengthsToBeBetween(column=col.name, max_value=col.max_length))
        if col.type == "date":
            suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(column=col.name, regex=ISO_8601))
    if len(spec.key) == 1:
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=spec.key[0]))
    elif spec.key:
        suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(spec.key)))
    return suite


@lru_cache(maxsize=1)
def _gx_batch_definition() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm noise in run logs
    source = context.data_sources.add_pandas("trialsynth_ingest")
    return source.add_dataframe_asset("domain_file").add_batch_definition_whole_dataframe("whole_file")


def run_suite(typed: pl.DataFrame, spec: DomainSpec) -> tuple[list[RowProblem], list[dict[str, Any]]]:
    """Run the domain's GX suite; return one problem per failing (row, expectation) and a summary."""
    columns = [*spec.column_names, SOURCE_ROW]
    pdf = typed.select(columns).to_pandas()
    batch = _gx_batch_definition().get_batch(batch_parameters={"dataframe": pdf})
    result = batch.validate(
        build_suite(spec),
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [SOURCE_ROW],
                       "partial_unexpected_count": 0},
    )
    problems: list[RowProblem] = []
    summary: list[dict[str, Any]] = []
    for res in result.results:
        cfg = res.expectation_config
        kwargs = cfg.kwargs
        column = kwargs.get("column") or ",".join(kwargs.get("column_list", []))
        rule = cfg.type
        info = res.result or {}
        summary.append({"expectation": rule, "column": column, "success": bool(res.success),
                        "unexpected_count": int(info.get("unexpected_count") or 0)})
        if res.success:
            continue
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX expectation {rule} on {column} failed to run: {res.exception_info.get('exception_message')}")
        for item in info.get("unexpected_index_list") or []:
            row = int(item[SOURCE_ROW])
            value = ", ".join(f"{k}={getattr(v, 'item', lambda v=v: v)()!r}" for k, v in item.items() if k != SOURCE_ROW)
            problems.append(RowProblem(row, column, rule, f"unexpected value {value}"))
    return problems, summary


def validate_frame(df: pl.DataFrame, spec: DomainSpec, file_name: str, read_problems: list[RowProblem] | None = None) -> ValidationResult:
    """Type ``df`` to ``spec``, run the GX suite, and split passed from quarantined rows."""
    typed, type_problems = coerce_to_spec(df, spec, file_name)
    gx_problems, summary = run_suite(typed, spec)
    dates = calendar_problems(typed, [c.name for c in spec.columns if c.type == "date"])
    problems = [*(read_problems or []), *type_problems, *gx_problems, *dates]
    reasons = pl.DataFrame(
        [{"file": file_name, "row": p.row, "column": p.column, "rule": p.rule, "detail": p.detail} for p in problems],
        schema=REASON_SCHEMA,
    ).sort("row", "column", "rule", nulls_last=True)
    bad_rows = reasons.group_by("row").agg(
        pl.concat_str(
            pl.lit("["), pl.struct("column", "rule", "detail").struct.json_encode().str.join(","), pl.lit("]")
        ).alias("_reasons")
    )
    quarantined = df.join(bad_rows, left_on=SOURCE_ROW, right_on="row", how="inner").sort(SOURCE_ROW)
    quarantined = quarantined.with_columns(  # original values as text: nothing the sponsor sent is lost
        _as_text(pl.col(c), quarantined.schema[c]) for c in df.columns if c != SOURCE_ROW)
    passed = typed.join(bad_rows.select("row"), left_on=SOURCE_ROW, right_on="row", how="anti").sort(SOURCE_ROW)
    return ValidationResult(spec.name, file_name, df.height, passed, quarantined, reasons, summary)
