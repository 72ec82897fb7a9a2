"""The ingest's row checks are vectorised polars expressions; they must quarantine exactly what the
Great Expectations suite they replace (still built by ``build_suite``) flags, with the same reasons."""

from __future__ import annotations

import polars as pl
import pytest

from trialsynth.demo.generator import generate_study, write_drop
from trialsynth.domains import DOMAINS, Column, DomainSpec
from trialsynth.ingest.consistency import natural_key_problems
from trialsynth.ingest.readers import SOURCE_ROW, read_file
from trialsynth.ingest.validation import build_suite, coerce_to_spec, run_suite

# (domain, row, column, value sent): one damage per rule of the suite, plus typing failures
DAMAGE = [
    ("dm", 2, "USUBJID", None),  # required value missing
    ("dm", 3, "AGE", "150"),  # out of range
    ("dm", 4, "AGE", "nan"),  # not finite: a typing failure, then a null the range check skips
    ("dm", 5, "SEX", "X"),  # not in the controlled terms
    ("dm", 6, "RFSTDTC", "20250101"),  # not ISO 8601
    ("dm", 7, "RFSTDTC", " 2025-01-07"),  # padded: not ISO 8601 either
    ("dm", 9, "USUBJID", "<row 8>"),  # a repeated unique key
    ("dm", 10, "SITEID", None),
    ("vs", 3, "USUBJID", "<row 2>"),
    ("vs", 3, "VSSEQ", "<row 2>"),  # a repeated compound key
    ("vs", 4, "VSSTRESN", "2e6"),
    ("vs", 5, "VSSTRESN", "inf"),
    ("vs", 6, "VSSTAT", "DONE"),
    ("vs", 7, "VSSEQ", None),  # a compound key part missing: required, and still compared as a key
    ("vs", 8, "VSDTC", "2025-1-5"),
    ("sites", 2, "SITEID", "<row 1>"),
    ("sites", 3, "TARGET_ENROLLMENT", "-1"),
    ("queries", 2, "QUERY_TYPE", "auto"),
    ("queries", 3, "OPENED_DTC", None),
    ("queries", 4, "STATUS", "REOPENED"),
]
# an "other" SDTM domain typed from define.xml: lengths and codelists
MH = DomainSpec("other/mh", "medical history", (Column("STUDYID", required=True), Column("MHTERM", max_length=8),
                                                 Column("MHCAT", allowed=("GENERAL", "CARDIAC")),
                                                 Column("MHSEQ", "float")), key=())
MH_ROWS = {"STUDYID": ["S1"] * 4, "MHTERM": ["ASTHMA", "HYPERTENSION", None, "GOÛT"],
           "MHCAT": ["GENERAL", "OTHER", None, "CARDIAC"], "MHSEQ": ["1", "2", "3", None]}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, pl.DataFrame]:
    """The demo generator's CSV drop as the readers return it, with :data:`DAMAGE` applied."""
    landing = tmp_path_factory.mktemp("landing")
    drop = write_drop(generate_study("t1", "S1", n_subjects=30, n_sites=3, seed=5), landing, "t1", "S1", drop_id="d1")
    frames = {name: read_file(drop / f"{name}.csv")[0] for name in ("dm", "vs", "sites", "queries")}
    for name, row, column, value in DAMAGE:
        df = frames[name]
        if value is not None and value.startswith("<row "):
            value = df.filter(pl.col(SOURCE_ROW) == int(value[5:-1]))[column].item()
        frames[name] = df.with_columns(
            pl.when(pl.col(SOURCE_ROW) == row).then(pl.lit(value, dtype=pl.String)).otherwise(pl.col(column)).alias(column))
    frames["mh"] = pl.DataFrame(MH_ROWS).with_columns(pl.int_range(1, 5, dtype=pl.Int64).alias(SOURCE_ROW))
    return frames


def _great_expectations(typed: pl.DataFrame, spec: DomainSpec) -> tuple[set[tuple], dict[tuple, tuple]]:
    """The reference: GX itself running ``build_suite(spec)`` on the typed frame (as the ingest did
    before the checks were vectorised)."""
    import great_expectations as gx

    source = gx.get_context(mode="ephemeral").data_sources.add_pandas("reference")
    batch = source.add_dataframe_asset("file").add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": typed.select(*spec.column_names, SOURCE_ROW).to_pandas()})
    result = batch.validate(build_suite(spec), result_format={
        "result_format": "COMPLETE", "unexpected_index_column_names": [SOURCE_ROW], "partial_unexpected_count": 0})
    problems, summary = set(), {}
    for res in result.results:
        kwargs, rule = res.expectation_config.kwargs, res.expectation_config.type
        column = kwargs.get("column") or ",".join(kwargs.get("column_list", []))
        summary[(rule, column)] = (bool(res.success), int((res.result or {}).get("unexpected_count") or 0))
        for item in (res.result or {}).get("unexpected_index_list") or []:
            shown = ", ".join(f"{k}={getattr(v, 'item', lambda v=v: v)()!r}" for k, v in item.items() if k != SOURCE_ROW)
            problems.add((int(item[SOURCE_ROW]), column, rule, f"unexpected value {shown}"))
    return problems, summary


@pytest.mark.parametrize("name", ["dm", "vs", "sites", "queries", "mh"])
def test_polars_suite_flags_what_great_expectations_flags(damaged, name):
    spec = MH if name == "mh" else DOMAINS[name]
    typed, _ = coerce_to_spec(damaged[name], spec, f"{name}.csv")
    ours, summary = run_suite(typed, spec)
    reference, reference_summary = _great_expectations(typed, spec)
    got = {(p.row, p.column, p.rule, p.detail) for p in ours}
    assert got == reference
    assert {(s["expectation"], s["column"]): (s["success"], s["unexpected_count"]) for s in summary} == reference_summary
    assert got, "the damage is flagged"


def test_the_damage_reaches_every_rule_and_the_typing_check(damaged):
    rules, typing = set(), set()
    for name in ("dm", "vs", "sites", "queries", "mh"):
        spec = MH if name == "mh" else DOMAINS[name]
        typed, type_problems = coerce_to_spec(damaged[name], spec, f"{name}.csv")
        rules |= {p.rule for p in run_suite(typed, spec)[0]}
        typing |= {(name, p.row, p.column) for p in type_problems}
    assert rules == {"expect_column_values_to_not_be_null", "expect_column_values_to_be_between",
                     "expect_column_values_to_be_in_set", "expect_column_values_to_match_regex",
                     "expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique",
                     "expect_column_value_lengths_to_be_between"}
    assert typing == {("dm", 4, "AGE"), ("vs", 5, "VSSTRESN")}


def test_natural_keys_compare_values_as_trimmed_text():
    # rows 1-2: the same key once padded, different results -> both quarantined; row 3: same
    # subject and test at another visit -> fine; rows 4-5 exact repeats -> the second one only
    df = pl.DataFrame({"USUBJID": ["S1-001", " S1-001 ", "S1-001", "S1-002", "S1-002"],
                       "VISITNUM": ["1", "1", "2", "1", "1"], "VSTESTCD": ["HR", "HR ", "HR", "HR", "HR"],
                       "VSORRES": ["60", "61", "60", "70", "70"]}).with_columns(
        pl.int_range(1, 6, dtype=pl.Int64).alias(SOURCE_ROW))
    got = {(p.row, p.rule) for p in natural_key_problems(df, "VS")}
    assert got == {(1, "natural_key_conflict"), (2, "natural_key_conflict"), (5, "duplicate_record")}
