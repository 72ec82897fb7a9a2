"""Demo EDC generator: contract, determinism, the simulated mechanisms, the drop and the CLI."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from trialsynth.cli import main
from trialsynth.demo import EXTRA_COLUMNS, READY_MARKER, DemoConfig, generate_study, generator, write_drop
from trialsynth.domains import DOMAINS

SUPINE = "AFTER LYING DOWN FOR 5 MINUTES"


@pytest.fixture(scope="module")
def study() -> dict[str, pd.DataFrame]:
    return generate_study("acme", "ACME-001", n_subjects=600, n_sites=12, seed=7)


@pytest.fixture(scope="module")
def big() -> dict[str, pd.DataFrame]:
    """Large enough for the statistical properties to show clearly."""
    return generate_study("acme", "ACME-001", n_subjects=3000, n_sites=12, seed=11, return_latent=True)


def _week24_effect(tables: dict[str, pd.DataFrame]) -> float:
    """Drug minus placebo mean change from baseline in recorded supine SYSBP at Week 24."""
    vs, dm = tables["vs"], tables["dm"]
    sbp = vs[(vs["VSTESTCD"] == "SYSBP") & (vs["VSTPT"] == SUPINE)]
    wide = sbp.pivot_table(index="USUBJID", columns="VISITNUM", values="VSSTRESN", observed=True)
    change = (wide[9.0] - wide[2.0]).dropna().rename("change").reset_index()
    means = change.merge(dm[["USUBJID", "ARMCD"]]).groupby("ARMCD", observed=True)["change"].mean()
    return means["XAN50"] - means["PBO"]


def _dispositions(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per randomised subject with a final disposition, with ``stopped`` (discontinued)."""
    ds, dm = tables["ds"], tables["dm"]
    final = ds[(ds["DSCAT"] == "DISPOSITION EVENT") & (ds["DSDECOD"] != "SCREEN FAILURE")]
    final = final.merge(dm[["USUBJID", "ARMCD", "SITEID"]], on="USUBJID")
    return final.assign(stopped=final["DSDECOD"] != "COMPLETED")


def _site_rates(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-site KRIs as the RBQM marts define them."""
    dm, dv, ae, q, pages = (tables[k] for k in ("dm", "dv", "ae", "queries", "crf_pages"))
    cut = pages["ENTRY_DATE"].max()
    rand = dm[dm["ARMCD"] != "SCRNFAIL"]
    subject_days = ((rand["RFENDTC"].fillna(cut) - rand["RFSTDTC"]).dt.days + 1).groupby(rand["SITEID"], observed=True).sum()
    site_of = dm.set_index("USUBJID")["SITEID"]
    entered = pages.dropna(subset=["ENTRY_DATE"])
    late = (entered["ENTRY_DATE"] - entered["VISIT_DATE"]).dt.days > 10
    return pd.DataFrame({
        "deviations_per_1000_days": 1000 * dv["USUBJID"].map(site_of).value_counts() / subject_days,
        "aes_per_1000_days": 1000 * ae["USUBJID"].map(site_of).value_counts() / subject_days,
        "queries_per_100_pages": 100 * q["SITEID"].value_counts() / pages["SITEID"].value_counts(),
        "late_page_share": late.groupby(entered["SITEID"], observed=True).mean(),
    })


# --- contract ---------------------------------------------------------------------------------
def test_every_domain_has_exactly_the_contract_columns(study):
    assert set(study) == set(DOMAINS)
    for name, spec in DOMAINS.items():
        frame = study[name]
        assert list(frame.columns) == spec.column_names + list(EXTRA_COLUMNS.get(name, ())), name
        assert len(frame) > 0, name
        for col in spec.columns:
            values = frame[col.name]
            if col.required:
                assert values.notna().all(), f"{name}.{col.name} has nulls"
            if col.type == "date":
                assert pd.api.types.is_datetime64_any_dtype(values), f"{name}.{col.name}"
            if col.type in ("float", "int"):
                assert pd.api.types.is_numeric_dtype(values), f"{name}.{col.name}"
                present = values.dropna()
                if col.min is not None:
                    assert (present >= col.min).all() and (present <= col.max).all(), f"{name}.{col.name}"
            if col.allowed is not None:
                assert set(values.dropna().astype(str)) <= set(col.allowed), f"{name}.{col.name}"


def test_keys_are_unique(study):
    for name, spec in DOMAINS.items():
        assert not study[name].duplicated(list(spec.key)).any(), f"{name} key {spec.key} not unique"


def test_same_seed_gives_identical_frames_and_another_seed_differs():
    first = generate_study("acme", "ACME-001", n_subjects=200, n_sites=5, seed=3)
    again = generate_study("acme", "ACME-001", n_subjects=200, n_sites=5, seed=3)
    other = generate_study("acme", "ACME-001", n_subjects=200, n_sites=5, seed=4)
    for name in first:  # DataFrame.equals: same dtypes, categories and values (assert_frame_equal is
        # very slow on large categoricals)
        assert first[name].equals(again[name]), name
    assert not first["vs"]["VSSTRESN"].equals(other["vs"]["VSSTRESN"])
    assert not first["dm"]["RFICDTC"].equals(other["dm"]["RFICDTC"])


def test_dm_has_one_row_per_screened_subject_and_nothing_after_the_data_cut(study):
    assert len(study["dm"]) == 600
    config = DemoConfig()
    cut = pd.Timestamp(date(2025, 1, 6) + timedelta(days=config.enrollment_days + config.cut_lag_days))
    for name, frame in study.items():
        for col in frame.select_dtypes("datetime").columns:
            assert frame[col].max() <= cut, f"{name}.{col} after the data cut"
    # the study runs up to the cut: some subjects are still on study, some queries still open
    assert study["dm"]["RFSTDTC"].notna().sum() > study["dm"]["RFENDTC"].notna().sum()
    assert (study["queries"]["STATUS"] == "OPEN").any()


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="n_subjects"):
        generate_study("acme", "ACME-001", n_subjects=0)
    with pytest.raises(ValueError, match="study"):
        generate_study("acme", "ACME 001")
    with pytest.raises(ValueError, match="screen_fail_rate"):
        DemoConfig(screen_fail_rate=1.5)


# --- mechanisms -------------------------------------------------------------------------------
def test_screen_failures_and_one_to_one_randomisation(big):
    dm, ds = big["dm"], big["ds"]
    failed = dm["ARMCD"] == "SCRNFAIL"
    assert abs(failed.mean() - DemoConfig().screen_fail_rate) < 0.03
    assert set(dm.loc[failed, "ARM"]) == {"Screen Failure"}
    assert dm.loc[failed, "RFSTDTC"].isna().all()
    sf = ds[ds["DSDECOD"] == "SCREEN FAILURE"]
    assert set(sf["USUBJID"]) == set(dm.loc[failed, "USUBJID"])
    assert set(sf["DSCAT"]) == {"DISPOSITION EVENT"}
    assert "INCLUSION/EXCLUSION CRITERIA NOT MET" in set(sf["DSTERM"])
    arms = dm.loc[~failed, "ARMCD"].astype(str).value_counts()
    assert set(arms.index) == {"PBO", "XAN50"}
    assert abs(arms["PBO"] - arms["XAN50"]) / arms.sum() < 0.03


def test_visits_follow_the_schedule_and_out_of_window_visits_are_deviations(big):
    sv = big["sv"].merge(big["dm"][["USUBJID", "RFSTDTC"]], on="USUBJID")
    assert sv.groupby("USUBJID")["SVSTDTC"].apply(lambda s: s.is_monotonic_increasing).all()
    plan = {i + 1.0: (day, window) for i, (_, day, window) in enumerate(generator.VISITS)}
    study_day = (sv["SVSTDTC"] - sv["RFSTDTC"]).dt.days
    study_day = study_day + (study_day >= 0)
    off = (study_day - sv["VISITNUM"].map(lambda v: plan[v][0])).abs()
    outside = (sv["VISITNUM"] >= 3) & (off > sv["VISITNUM"].map(lambda v: plan[v][1]))
    assert 0 < outside.mean() < 0.15
    assert outside.sum() == (big["dv"]["DVCAT"] == "VISIT WINDOW").sum()


def test_treatment_effect_on_primary_endpoint_follows_the_configuration(big):
    configured = DemoConfig().sbp_effect
    assert abs(_week24_effect(big) - configured) < 1.5
    null = generate_study("acme", "ACME-001", n_subjects=3000, n_sites=12, seed=11,
                          config=DemoConfig(sbp_effect=0.0))
    assert abs(_week24_effect(null)) < 1.5


def test_dropout_is_higher_on_drug_and_after_adverse_events(big):
    final = _dispositions(big)
    by_arm = final.groupby("ARMCD", observed=True)["stopped"].mean()
    assert by_arm["XAN50"] > by_arm["PBO"]
    had_ae = final["USUBJID"].isin(big["ae"]["USUBJID"])
    assert final.loc[had_ae, "stopped"].mean() > final.loc[~had_ae, "stopped"].mean() + 0.05
    reasons = set(final.loc[final["stopped"], "DSDECOD"])
    assert reasons == {"ADVERSE EVENT", "LACK OF EFFICACY", "WITHDRAWAL BY SUBJECT", "LOST TO FOLLOW-UP"}
    # AEs are more frequent on drug
    ae_arm = big["ae"].merge(big["dm"][["USUBJID", "ARMCD"]])["ARMCD"].value_counts()
    assert ae_arm["XAN50"] > 1.2 * ae_arm["PBO"]


def test_dropouts_would_have_had_higher_unrecorded_blood_pressure(big):
    latent = big["latent"]
    at_dropout = latent[latent["DROPOUT_VISIT"]]
    assert len(at_dropout) > 100 and not at_dropout["RECORDED"].any()
    reference = (latent[latent["RECORDED"]].groupby(["ARMCD", "VISITNUM"], observed=True)["SYSBP_LATENT"]
                 .mean().rename("reference"))
    compared = at_dropout.join(reference, on=["ARMCD", "VISITNUM"])
    assert (compared["SYSBP_LATENT"] - compared["reference"]).mean() > 1.0
    reasons = _dispositions(big).set_index("USUBJID")["DSDECOD"]
    efficacy = compared[compared["USUBJID"].map(reasons) == "LACK OF EFFICACY"]
    assert (efficacy["SYSBP_LATENT"] - efficacy["reference"]).mean() > 5.0
    # the recorded values are the latent ones where recorded
    vs = big["vs"]
    primary = vs[(vs["VSTESTCD"] == "SYSBP") & (vs["VSTPT"] == SUPINE)].dropna(subset=["VSSTRESN"])
    joined = primary.merge(latent, on=["USUBJID", "VISITNUM"])
    assert len(joined) == latent["RECORDED"].sum()  # every recorded latent value is in VS
    np.testing.assert_array_equal(joined["VSSTRESN"], joined["SYSBP_LATENT"])


def test_results_not_done_and_normal_range_flags(big):
    lb = big["lb"]
    not_done = lb["LBSTAT"] == "NOT DONE"
    assert 0.005 < not_done.mean() < 0.1
    assert lb.loc[not_done, "LBSTRESN"].isna().all() and lb.loc[not_done, "LBREASND"].notna().all()
    done = lb[~not_done]
    expected = np.where(done["LBSTRESN"] < done["LBSTNRLO"], "LOW",
                        np.where(done["LBSTRESN"] > done["LBSTNRHI"], "HIGH", "NORMAL"))
    np.testing.assert_array_equal(done["LBNRIND"].astype(str), expected)
    assert set(lb["LBTESTCD"]) >= {"ALT", "AST", "BILI", "CREAT", "GLUC", "HGB", "WBC", "PLAT", "SODIUM", "POTASS"}
    vs = big["vs"]
    assert set(vs.loc[vs["VSTESTCD"] == "HEIGHT", "VISITNUM"]) == {1.0}
    assert (big["ae"]["AESER"] == "Y").mean() == pytest.approx(0.05, abs=0.025)


def test_outlier_site_stands_out_on_every_quality_indicator(study):
    rates = _site_rates(study)
    outlier = study["sites"]["SITEID"].iloc[-1]
    assert rates["deviations_per_1000_days"].idxmax() == outlier
    assert rates["queries_per_100_pages"].idxmax() == outlier
    assert rates["late_page_share"].idxmax() == outlier
    assert rates["aes_per_1000_days"].idxmin() == outlier


def test_without_outlier_no_site_is_that_extreme():
    tables = generate_study("acme", "ACME-001", n_subjects=600, n_sites=12, seed=7,
                            config=DemoConfig(outlier_site=False))
    deviations = _site_rates(tables)["deviations_per_1000_days"]
    assert deviations.max() < 2.5 * deviations.median()


# --- landing ----------------------------------------------------------------------------------
def test_drop_is_complete_before_ready_is_written_and_reruns_write_nothing(study, tmp_path, monkeypatch):
    final = tmp_path / "acme" / "ACME-001" / "d1"
    seen_ready = []
    real_write = generator._write_table

    def spy(frame, folder, name, fmt):
        seen_ready.append((final / READY_MARKER).exists())
        real_write(frame, folder, name, fmt)

    monkeypatch.setattr(generator, "_write_table", spy)
    path = write_drop(study, tmp_path, "acme", "ACME-001", drop_id="d1")
    assert path == final and seen_ready == [False] * len(study)
    ready = final / READY_MARKER
    assert ready.stat().st_size == 0
    files = {p.name: p.stat().st_mtime_ns for p in final.iterdir()}
    assert set(files) == {f"{name}.csv" for name in study} | {READY_MARKER}
    assert files[READY_MARKER] >= max(files.values())
    assert not [p for p in (tmp_path / "acme" / "ACME-001").iterdir() if p.name != "d1"]

    assert write_drop(study, tmp_path, "acme", "ACME-001", drop_id="d1") == final
    assert {p.name: p.stat().st_mtime_ns for p in final.iterdir()} == files
    changed = dict(study, dm=study["dm"].iloc[1:])
    with pytest.raises(FileExistsError, match="different content"):
        write_drop(changed, tmp_path, "acme", "ACME-001", drop_id="d1")


def test_default_drop_id_and_rejected_names(study, tmp_path):
    assert write_drop(study, tmp_path, "acme", "ACME-001").name == "demo-s7-n600-k12"
    with pytest.raises(ValueError, match="tenant"):
        write_drop(study, tmp_path, "../evil", "ACME-001")
    with pytest.raises(ValueError, match="not domains"):
        write_drop({"latent": study["dm"]}, tmp_path, "acme", "ACME-001", drop_id="x")


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xpt"])
def test_same_arguments_give_byte_identical_files(fmt, tmp_path):
    def land(where: Path) -> dict[str, bytes]:
        tables = generate_study("acme", "ACME-001", n_subjects=60, n_sites=3, seed=5)
        drop = write_drop(tables, where, "acme", "ACME-001", fmt=fmt)
        return {p.name: p.read_bytes() for p in drop.iterdir()}

    first = land(tmp_path / "a")
    if fmt == "xpt":
        time.sleep(1.1)  # pyreadstat stamps the current second into XPT headers
    assert land(tmp_path / "b") == first
    ext = {"csv": "csv", "parquet": "parquet", "xpt": "xpt"}[fmt]
    assert {n for n in first if n.startswith("dm.")} == {f"dm.{ext}"}
    if fmt == "xpt":
        assert {"sites.csv", "queries.csv", "crf_pages.csv"} <= set(first)


def test_csv_and_xpt_content(study, tmp_path):
    csv_drop = write_drop(study, tmp_path, "acme", "ACME-001", drop_id="c", fmt="csv")
    text = (csv_drop / "dm.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(study["dm"].columns)
    assert re.search(r",\d{4}-\d{2}-\d{2},", text) and "T00:00" not in text and "00:00:00" not in text
    lb = pd.read_csv(csv_drop / "lb.csv")
    assert len(lb) == len(study["lb"])
    np.testing.assert_allclose(lb["LBSTRESN"], study["lb"]["LBSTRESN"])

    xpt_drop = write_drop({"dm": study["dm"]}, tmp_path, "acme", "ACME-001", drop_id="x", fmt="xpt")
    dm, _ = pyreadstat.read_xport(str(xpt_drop / "dm.xpt"))
    assert len(dm) == 600 and list(dm.columns) == list(study["dm"].columns)
    np.testing.assert_array_equal(dm["AGE"], study["dm"]["AGE"])
    assert dm["RFICDTC"].iloc[0] == study["dm"]["RFICDTC"].iloc[0].strftime("%Y-%m-%d")


# --- CLI --------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--tenant", "../evil"), ("--study", "a b"), ("--study", "x';DROP")])
def test_cli_rejects_unsafe_names(flag, value, tmp_path, capsys):
    args = {"--tenant": "acme", "--study": "ACME-001", flag: value}
    code = main(["demo-data", *[x for kv in args.items() for x in kv], "--landing", str(tmp_path)])
    assert code == 2
    assert flag in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_a_drop_and_reruns_are_no_ops(tmp_path, capsys):
    argv = ["demo-data", "--tenant", "acme", "--study", "ACME-001", "--subjects", "40", "--sites", "3",
            "--seed", "2", "--landing", str(tmp_path)]
    assert main(argv) == 0
    assert "written" in capsys.readouterr().out
    drop = tmp_path / "acme" / "ACME-001" / "demo-s2-n40-k3"
    assert (drop / READY_MARKER).exists() and (drop / "dm.csv").exists()
    assert main(argv) == 0
    assert "unchanged" in capsys.readouterr().out


# --- scale (make bench) -----------------------------------------------------------------------
@pytest.mark.slow
def test_large_study_is_fast_and_has_two_million_observations():
    started = time.perf_counter()
    tables = generate_study("acme", "ACME-BIG", n_subjects=14000, n_sites=12, seed=7)
    elapsed = time.perf_counter() - started
    assert len(tables["vs"]) + len(tables["lb"]) >= 2_000_000
    assert elapsed < 60
