"""Ingest integrity (issue 9): every source row ends in bronze or in quarantine with a reason, nothing
else gets in, and a study's bronze is always one whole drop.

Damaged drops are built here from small CSVs, the demo generator and ../shared's CDISC pilot."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import make_drop
from trialsynth.ingest.landing import open_drop
from trialsynth.ingest.pipeline import ingest_raw_version, read_quarantine
from trialsynth.ingest.raw_zone import land_drop

DM = "STUDYID,DOMAIN,USUBJID,SITEID,AGE,SEX,RFSTDTC\n"
DM_OK = ["S1,DM,S1-001,701,63,F,2024-01-05\n", "S1,DM,S1-002,701,71,M,2024-01-09\n", "S1,DM,S1-003,702,58,F,2024-02-01\n"]
AE = "STUDYID,DOMAIN,USUBJID,AESEQ,AETERM,AESTDTC\n"
VS = "STUDYID,DOMAIN,USUBJID,VSSEQ,VSTESTCD,VSORRES,VSSTRESN,VISITNUM,VSDTC\n"


def run(tmp_path: Path, files: dict[str, bytes | str], drop_id: str = "d1", tenant: str = "t1", study: str = "S1"):
    landing, raw_dir, lake = tmp_path / "landing", tmp_path / "raw", tmp_path / "lake"
    make_drop(landing, tenant, study, drop_id, {k: v.encode() if isinstance(v, str) else v for k, v in files.items()})
    raw = land_drop(open_drop(landing, tenant, study, drop_id), raw_dir)
    return raw, ingest_raw_version(raw, lake, log=lambda _m: None), lake / tenant / study


def reasons(report, name: str) -> pl.DataFrame:
    return read_quarantine(report.domains[name].reasons_path, report.tenant)


# ------------------------------------------------------------------ item 6: impossible dates
@pytest.mark.parametrize("bad", ["2025-02-30", "2025-13-01", "2025-02-29", "2025-04-31", "2025-00-10",
                                 "2025-03-14T24:00", "2025-03-14T10:61"])
def test_impossible_calendar_dates_are_quarantined(tmp_path, bad):
    _, report, _ = run(tmp_path, {"dm.csv": DM + DM_OK[0] + f"S1,DM,S1-002,701,71,M,{bad}\n"})
    assert (report.domains["dm"].rows_passed, report.domains["dm"].rows_quarantined) == (1, 1)
    got = reasons(report, "dm").to_dicts()
    assert [(r["file"], r["row"], r["column"], r["rule"]) for r in got] == [("dm.csv", 2, "RFSTDTC", "iso8601_calendar")]
    assert bad in got[0]["detail"]


@pytest.mark.parametrize("good", ["2024-02-29", "2025-03", "2025", "2025---14", "2025-03-14T09:30",
                                  "2025-03-14T09:30:15.5", "2025-03-14T-:30"])
def test_partial_and_valid_iso_dates_pass_and_keep_their_precision(tmp_path, good):
    _, report, study_dir = run(tmp_path, {"dm.csv": DM + f"S1,DM,S1-001,701,63,F,{good}\n"})
    assert report.domains["dm"].rows_passed == 1, report.domains["dm"]
    assert pl.read_parquet(study_dir / "bronze" / "dm.parquet")["RFSTDTC"].to_list() == [good]


# ------------------------------------------------------------------ item 7: natural-key conflicts
def test_conflicting_natural_keys_are_quarantined_together_and_exact_repeats_keep_one(tmp_path):
    vs = VS + "".join([
        "S1,VS,S1-001,1,SYSBP,120,120,1,2024-01-05\n",
        "S1,VS,S1-001,2,SYSBP,135,135,1,2024-01-05\n",  # same subject/visit/test, another value
        "S1,VS,S1-001,3,DIABP,80,80,1,2024-01-05\n",
        "S1,VS,S1-001,4,DIABP,80,80,1,2024-01-05\n",  # exact repeat of row 3
        "S1,VS,S1-001,5,SYSBP,118,118,2,2024-02-05\n",
    ])
    _, report, study_dir = run(tmp_path, {"dm.csv": DM + DM_OK[0], "vs.csv": vs})
    got = {(r["row"], r["rule"]) for r in reasons(report, "vs").to_dicts()}
    assert got == {(1, "natural_key_conflict"), (2, "natural_key_conflict"), (4, "duplicate_record")}
    detail = reasons(report, "vs").filter(pl.col("row") == 1)["detail"].item()
    assert "USUBJID=S1-001" in detail and "VISITNUM=1" in detail and "VSTESTCD=SYSBP" in detail
    bronze = pl.read_parquet(study_dir / "bronze" / "vs.parquet")
    assert sorted(bronze["VSSEQ"].to_list()) == [3.0, 5.0]


def test_time_points_are_part_of_the_natural_key(cdisc_sdtm, tmp_path):
    """The pilot measures blood pressure at several time points per visit: not conflicts."""
    vs = pl.read_csv(cdisc_sdtm / "vs.csv", infer_schema=False).head(3000)
    _, report, _ = run(tmp_path, {"vs.csv": vs.write_csv(), "dm.xpt": (cdisc_sdtm / "dm.xpt").read_bytes()},
                       tenant="cdisc", study="CDISCPILOT01")
    assert not report.failures
    assert report.domains["vs"].rows_quarantined == 0


# ------------------------------------------------------------------ item 5: parents and children
def test_children_of_a_quarantined_subject_and_orphans_are_quarantined_with_the_reason(tmp_path):
    dm = DM + DM_OK[0] + "S1,DM,S1-002,701,250,M,2024-01-09\n"  # age out of range -> S1-002 quarantined
    ae = AE + "S1,AE,S1-001,1,Headache,2024-01-06\nS1,AE,S1-002,1,Nausea,2024-01-10\nS1,AE,S1-999,1,Rash,2024-01-11\n"
    _, report, study_dir = run(tmp_path, {"dm.csv": dm, "ae.csv": ae})
    ae_reasons = {r["row"]: (r["rule"], r["detail"]) for r in reasons(report, "ae").to_dicts()}
    assert ae_reasons[2][0] == "subject_quarantined_in_dm" and "S1-002 quarantined in DM" in ae_reasons[2][1]
    assert ae_reasons[3][0] == "subject_not_in_dm" and "S1-999" in ae_reasons[3][1]
    assert pl.read_parquet(study_dir / "bronze" / "ae.parquet")["USUBJID"].to_list() == ["S1-001"]


def test_rows_of_another_domain_in_a_file_and_padded_subject_ids(tmp_path):
    dm = DM + "S1,DM, S1-001 ,701,63,F,2024-01-05\n"  # padded USUBJID still matches its children
    ae = AE + "S1,AE,S1-001,1,Headache,2024-01-06\nS1,CM,S1-001,2,Aspirin,2024-01-06\n"
    _, report, _ = run(tmp_path, {"dm.csv": dm, "ae.csv": ae})
    assert [(r["row"], r["rule"]) for r in reasons(report, "ae").to_dicts()] == [(2, "domain_mismatch")]


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e400"])
def test_non_finite_numbers_are_quarantined(tmp_path, value):
    _, report, _ = run(tmp_path, {"dm.csv": DM + DM_OK[0], "ae.csv": AE + f"S1,AE,S1-001,{value},Headache,2024-01-06\n"})
    assert ("AESEQ", "type:float") in {(r["column"], r["rule"]) for r in reasons(report, "ae").to_dicts()}
    assert report.domains["ae"].rows_passed == 0


def test_subject_rows_without_dm_in_the_drop_are_quarantined_not_dropped(tmp_path):
    _, report, _ = run(tmp_path, {"ae.csv": AE + "S1,AE,S1-001,1,Headache,2024-01-06\n"})
    assert report.domains["ae"].rows_quarantined == 1
    assert "the drop has no DM" in reasons(report, "ae")["detail"].item()


# ------------------------------------------------------------------ item 9: identity
def test_a_drop_naming_another_study_is_rejected_and_bronze_keeps_the_previous_drop(tmp_path):
    _, first, study_dir = run(tmp_path, {"dm.csv": DM + "".join(DM_OK)}, drop_id="d1")
    assert first.bronze_written
    before = {p.name: p.read_bytes() for p in (study_dir / "bronze").iterdir()}
    other = DM + DM_OK[0] + "S2,DM,S1-004,701,40,F,2024-03-01\n"
    raw, report, _ = run(tmp_path, {"dm.csv": other, "ae.csv": AE + "S1,AE,S1-001,1,Headache,2024-01-06\n"}, drop_id="d2")
    assert not report.bronze_written
    assert "STUDYID 'S2'" in report.failures["dm.csv"] and "study folder 'S1'" in report.failures["dm.csv"]
    assert "rows [2]" in report.failures["dm.csv"]
    assert {p.name: p.read_bytes() for p in (study_dir / "bronze").iterdir()} == before  # untouched, whole
    assert raw.read_bytes("dm.csv").decode() == other  # raw bytes kept


def test_files_disagreeing_on_studyid_reject_the_drop(tmp_path):
    _, report, study_dir = run(tmp_path, {"dm.csv": DM + "".join(DM_OK),
                                          "ae.csv": AE + "OTHER,AE,S1-001,1,Headache,2024-01-06\n"})
    assert set(report.failures) == {"ae.csv"} and not (study_dir / "bronze").exists()


# ------------------------------------------------------------------ item 3 (bronze half): one drop, never a mix
def test_a_failing_drop_never_mixes_into_bronze(tmp_path):
    run(tmp_path, {"dm.csv": DM + "".join(DM_OK), "ae.csv": AE + "S1,AE,S1-001,1,Headache,2024-01-06\n"}, drop_id="d1")
    _, report, study_dir = run(tmp_path, {"dm.csv": DM + DM_OK[0], "ae.csv": b""}, drop_id="d2")  # ae unreadable
    assert "ae.csv" in report.failures and not report.bronze_written
    for path in (study_dir / "bronze").glob("*.parquet"):
        frame = pl.read_parquet(path)
        if "_drop_id" in frame.columns and frame.height:
            assert set(frame["_drop_id"]) == {"d1"}, path.name
    assert pl.read_parquet(study_dir / "bronze" / "dm.parquet").height == 3
    _, third, _ = run(tmp_path, {"dm.csv": DM + DM_OK[0]}, drop_id="d3")  # a good drop replaces it whole
    assert third.bronze_written
    assert pl.read_parquet(study_dir / "bronze" / "ae.parquet").height == 0  # d3 has no AE: no d1 rows left
    assert set(pl.read_parquet(study_dir / "bronze" / "dm.parquet")["_drop_id"]) == {"d3"}


def test_an_interrupted_swap_is_repaired_by_the_next_ingest(tmp_path):
    _, _, study_dir = run(tmp_path, {"dm.csv": DM + "".join(DM_OK)}, drop_id="d1")
    (study_dir / "bronze").rename(study_dir / "bronze.prev")  # crash between the two renames
    _, report, _ = run(tmp_path, {"dm.csv": DM, "ae.csv": b""}, drop_id="d2")  # a failing drop
    assert not report.bronze_written and pl.read_parquet(study_dir / "bronze" / "dm.parquet").height == 3


# ------------------------------------------------------------------ item 8: real-world layouts
def test_lb_split_by_category_is_recognised_concatenated_and_validated(cdisc_sdtm, tmp_path):
    import pyreadstat

    lb = pl.read_csv(cdisc_sdtm / "lb.csv", infer_schema=False)
    files: dict[str, bytes] = {"dm.xpt": (cdisc_sdtm / "dm.xpt").read_bytes()}
    parts = {"lbch": "CHEMISTRY", "lbhe": "HEMATOLOGY", "lbur": "URINALYSIS"}
    for stem, cat in parts.items():
        part = lb.filter(pl.col("LBCAT") == cat).with_columns(pl.col("LBSEQ", "LBSTRESN", "VISITNUM").cast(pl.Float64))
        path = tmp_path / f"{stem}.xpt"
        pyreadstat.write_xport(part.to_pandas(), str(path), table_name=stem.upper(), file_format_version=5)
        files[f"{stem}.xpt"] = path.read_bytes()
    expected = lb.filter(pl.col("LBCAT").is_in(list(parts.values()))).height
    _, report, study_dir = run(tmp_path, files, tenant="cdisc", study="CDISCPILOT01")
    outcome = report.domains["lb"]
    assert outcome.files == ["lbch.xpt", "lbhe.xpt", "lbur.xpt"]
    assert outcome.rows_in == expected and outcome.rows_passed + outcome.rows_quarantined == expected
    bronze = pl.read_parquet(study_dir / "bronze" / "lb.parquet")
    assert bronze.height == outcome.rows_passed > 0.99 * expected
    assert set(bronze["_source_file"]) == set(outcome.files)
    assert bronze.group_by("_source_file").agg(pl.col("_source_row").max())["_source_row"].min() > 1000
    assert "split dataset 3 files" in report.placements["lbhe.xpt"]


def test_every_file_of_the_pilot_is_placed_and_reported(cdisc_sdtm, tmp_path):
    files = {p.name: p.read_bytes() for p in cdisc_sdtm.iterdir() if p.is_file()}
    raw, report, study_dir = run(tmp_path, files, tenant="cdisc", study="CDISCPILOT01")
    assert not report.failures
    assert set(report.placements) == set(raw.files) - {"_manifest.json"}  # nothing silently set aside
    assert "bronze/other/ex, validated by define.xml" in report.placements["ex.xpt"]
    assert "bronze/supp/suppae" in report.placements["suppae.xpt"]
    assert report.domains["supp/suppae"].rows_passed == 1191 and report.domains["other/ta"].rows_passed == 8
    assert report.domains["other/ex"].rows_quarantined == 0  # define.xml's numeric codelists don't misfire
    ex = pl.read_parquet(study_dir / "bronze" / "other" / "ex.parquet")
    assert ex["EXDOSE"].dtype == pl.Float64 and ex["tenant_id"].unique().to_list() == ["cdisc"]


def test_other_domains_without_define_are_typed_by_sdtm_class(tmp_path):
    mh = ("STUDYID,DOMAIN,USUBJID,MHSEQ,MHTERM,MHSTDTC,MHSTDY\n"
          "S1,MH,S1-001,1,Asthma,2019-05,-300\nS1,MH,S1-001,2,Gout,2019-02-30,x\n")
    _, report, study_dir = run(tmp_path, {"dm.csv": DM + DM_OK[0], "mh.csv": mh, "notes.csv": "a,b\n1,2\n",
                                          "protocol.pdf": b"%PDF-1.4"})
    assert "validated by SDTM Events rules" in report.placements["mh.csv"]
    got = {(r["row"], r["column"], r["rule"]) for r in reasons(report, "other/mh").to_dicts()}
    assert got == {(2, "MHSTDTC", "iso8601_calendar"), (2, "MHSTDY", "type:float")}
    assert pl.read_parquet(study_dir / "bronze" / "other" / "mh.parquet")["MHSTDY"].to_list() == [-300.0]
    assert "not validated" in report.placements["notes.csv"]
    assert "raw zone only" in report.placements["protocol.pdf"]


DEFINE = """<?xml version="1.0"?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.2" xmlns:def="http://www.cdisc.org/ns/def/v1.0"><Study><MetaDataVersion>
<ItemGroupDef OID="EX" Name="EX" def:Class="Interventions">
 <ItemRef ItemOID="EX.STUDYID" Mandatory="Yes"/><ItemRef ItemOID="EX.USUBJID" Mandatory="Yes"/>
 <ItemRef ItemOID="EX.EXSEQ" Mandatory="Yes"/><ItemRef ItemOID="EX.EXROUTE" Mandatory="No"/>
 <ItemRef ItemOID="EX.EXDOSE" Mandatory="No"/><ItemRef ItemOID="EX.EXTRT" Mandatory="Yes"/></ItemGroupDef>
<ItemDef OID="EX.STUDYID" Name="STUDYID" DataType="text" Length="8"/>
<ItemDef OID="EX.USUBJID" Name="USUBJID" DataType="text" Length="12"/>
<ItemDef OID="EX.EXSEQ" Name="EXSEQ" DataType="integer" Length="8"/>
<ItemDef OID="EX.EXTRT" Name="EXTRT" DataType="text" Length="4"/>
<ItemDef OID="EX.EXDOSE" Name="EXDOSE" DataType="float" Length="8"/>
<ItemDef OID="EX.EXROUTE" Name="EXROUTE" DataType="text" Length="20"><CodeListRef CodeListOID="ROUTE"/></ItemDef>
<CodeList OID="ROUTE" Name="ROUTE" DataType="text"><CodeListItem CodedValue="ORAL"/><CodeListItem CodedValue="TRANSDERMAL"/></CodeList>
</MetaDataVersion></Study></ODM>"""


def test_define_xml_types_lengths_and_codelists_validate_other_domains(tmp_path):
    ex = ("STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXROUTE\n"
          "S1,EX,S1-001,1,XAN,54,ORAL\nS1,EX,S1-001,2,XAN,5x,ORAL\nS1,EX,S1-001,3,XANOMELINE,54,ORAL\n"
          "S1,EX,S1-001,4,XAN,54,INTRAVENOUS\nS1,EX,S1-001,5,,54,ORAL\n")
    _, report, study_dir = run(tmp_path, {"dm.csv": DM + DM_OK[0], "ex.csv": ex, "define.xml": DEFINE})
    assert "validated by define.xml (Interventions)" in report.placements["ex.csv"]
    got = {(r["row"], r["column"], r["rule"].split("_to_")[-1]) for r in reasons(report, "other/ex").to_dicts()}
    assert got == {(2, "EXDOSE", "type:float"), (3, "EXTRT", "be_between"), (4, "EXROUTE", "be_in_set"),
                   (5, "EXTRT", "not_be_null")}
    assert pl.read_parquet(study_dir / "bronze" / "other" / "ex.parquet")["EXSEQ"].to_list() == [1.0]


def test_a_malformed_define_xml_is_reported_and_class_rules_apply(tmp_path):
    _, report, _ = run(tmp_path, {"dm.csv": DM + DM_OK[0], "define.xml": "<ODM><broken", "mh.csv":
                                  "STUDYID,DOMAIN,USUBJID,MHSEQ,MHTERM\nS1,MH,S1-001,1,Asthma\n"})
    assert report.bronze_written and "not well-formed" in report.placements["define.xml"]
    assert "SDTM Events rules" in report.placements["mh.csv"]


def test_supplemental_rows_need_their_parent_record(tmp_path):
    supp = ("STUDYID,RDOMAIN,USUBJID,IDVAR,IDVARVAL,QNAM,QLABEL,QVAL\n"
            "S1,AE,S1-001,AESEQ,1,AETRTEM,Treatment emergent,Y\nS1,AE,S1-001,AESEQ,7,AETRTEM,Treatment emergent,Y\n")
    _, report, _ = run(tmp_path, {"dm.csv": DM + DM_OK[0], "ae.csv": AE + "S1,AE,S1-001,1,Headache,2024-01-06\n",
                                  "suppae.csv": supp})
    got = reasons(report, "supp/suppae").to_dicts()
    assert [(r["row"], r["rule"]) for r in got] == [(2, "supp_parent_missing")] and "AESEQ=7" in got[0]["detail"]


def test_a_domain_sent_whole_and_split_is_refused(tmp_path):
    lb = "STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD\nS1,LB,S1-001,1,ALT\n"
    _, report, _ = run(tmp_path, {"dm.csv": DM + DM_OK[0], "lb.csv": lb, "lbch.csv": lb})
    assert "both whole and as split files" in report.failures["lb.csv"]


def test_a_file_named_like_a_split_but_of_another_domain_is_not_taken_as_one(tmp_path):
    dsmb = "STUDYID,MEETING,DECISION\nS1,1,continue\n"
    _, report, _ = run(tmp_path, {"dm.csv": DM + DM_OK[0], "dsmb.csv": dsmb})
    assert report.domains["ds"].rows_in == 0 and "other/dsmb" in report.placements["dsmb.csv"]


def test_demo_study_lands_with_nothing_quarantined(tmp_path):
    from trialsynth.demo.generator import generate_study, write_drop

    write_drop(generate_study("acme", "ACME-001", n_subjects=60, n_sites=3, seed=2), tmp_path / "landing", "acme", "ACME-001")
    (drop,) = [p for p in (tmp_path / "landing" / "acme" / "ACME-001").iterdir() if p.is_dir()]
    raw = land_drop(open_drop(tmp_path / "landing", "acme", "ACME-001", drop.name), tmp_path / "raw")
    report = ingest_raw_version(raw, tmp_path / "lake", log=lambda _m: None)
    assert not report.failures
    quarantined = {n: o.rows_quarantined for n, o in report.domains.items() if o.rows_quarantined}
    rules = set()
    for name in quarantined:
        rules |= set(reasons(report, name)["rule"])
    # the generator injects only the defects it documents; none of them are of the new kinds
    assert not rules & {"subject_not_in_dm", "natural_key_conflict", "iso8601_calendar"}, (quarantined, rules)
    shutil.rmtree(tmp_path / "lake")
