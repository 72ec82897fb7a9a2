"""Clinical-operations marts on one dbt build over a three-tenant lake.

* ``ops/OPS-01``: a hand-made study (sites 101-105 with subjects, 106 selected but never activated)
  whose KRI numerators, denominators, rates, z-scores, flags and QTL breaches, enrollment,
  safety and Kaplan-Meier rows are recomputed here from the fixture's own counts and dates;
* ``demo/DEMO-001``: the demo generator's study (600 subjects, 12 sites, seed 7), whose last site
  is seeded as a data-quality outlier (4x protocol deviations);
* ``cdisc/CDISCPILOT01``: the real CDISC pilot (no DV, query log, site table or CRF page log),
  ingested from ../shared when it is there.

The RBQM Dagster assets (qtl_limits, km_discontinuation) run first, as in the pipeline; the
ClickHouse SQL of the new models then runs on chDB against the DuckDB results.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import pytest

from tests.conftest import CDISC_SDTM
from tests.test_dbt_project import _normalise, assert_success, query, run_dbt, write_bronze
from trialsynth.domains import DOMAINS
from trialsynth.settings import get_settings

OPS = ("ops", "OPS-01")
DEMO = ("demo", "DEMO-001")
CDISC = ("cdisc", "CDISCPILOT01")
NEW_MODELS = ["fact_subject_disposition", "mart_kri_qtl", "mart_enrollment", "mart_safety", "mart_km_discontinuation",
              "mart_power_curves", "mart_imputation_delta", "mart_little_mcar", "mart_wasserstein"]

START = date(2024, 1, 15)  # first dose of every randomized ops subject
DISCONTINUED_ON = date(2024, 3, 15)
COMPLETED_ON = date(2024, 7, 15)
DATA_CUT = date(2024, 12, 31)  # the latest date of the ops study: ongoing subjects' last visit
AE_ONSET = date(2024, 2, 1)
SF_REASONS = ("INCLUSION/EXCLUSION CRITERIA NOT MET", "WITHDRAWAL BY SUBJECT")


@dataclass(frozen=True)
class Site:
    """One ops site: subject k < screen_failures fails screening, the next `discontinued` leave
    on DISCONTINUED_ON, the next `completed` complete on COMPLETED_ON, the rest are ongoing."""

    cro: str
    activated: str | None
    target: int
    screened: int = 20
    screen_failures: int = 0
    discontinued: int = 0
    completed: int = 0
    serious: int = 0  # the first `serious` AEs are serious
    report_delays: tuple[int, ...] = ()  # one AE per delay (onset -> EDC entry, days) on randomized subjects
    important_dv: int = 0
    non_important_dv: int = 0
    queries: int = 0  # of which open_long opened 2024-06-01 and open_recent 2024-12-20 are still open
    open_long: int = 0
    open_recent: int = 0
    pages_entered: int = 0  # of which pages_late entered 15 days after the visit (others after 2)
    pages_late: int = 0

    @property
    def randomized(self) -> int:
        return self.screened - self.screen_failures


SITES = {
    "101": Site("CRO-A", "2023-12-01", 20, screen_failures=2, discontinued=2, completed=10, serious=1,
                report_delays=(1, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5), important_dv=1, non_important_dv=4,
                queries=25, open_long=2, open_recent=1, pages_entered=120, pages_late=10),
    "102": Site("CRO-A", "2023-12-15", 15, screen_failures=3, discontinued=4, completed=8,
                report_delays=(-2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), non_important_dv=5,  # -2: entry before onset
                queries=23, open_long=1, pages_entered=110, pages_late=8),
    "103": Site("CRO-B", "2024-01-01", 15, screen_failures=4, discontinued=3, completed=8, serious=1,
                report_delays=(10, 12, 14, 9, 11, 13, 15, 10, 12, 14, 16), important_dv=1, non_important_dv=3,
                queries=30, open_long=5, open_recent=1, pages_entered=130, pages_late=30),
    "104": Site("CRO-B", "2023-12-01", 20, screen_failures=3, discontinued=2, completed=10,
                report_delays=(2, 2, 3, 3, 4, 4, 5, 5, 6, 6), important_dv=1, non_important_dv=4,
                queries=21, pages_entered=100, pages_late=5),
    "105": Site("CRO-C", "2024-01-05", 10, screen_failures=12, discontinued=4, completed=2, serious=1,
                report_delays=(20, 25, 30, 35), important_dv=3, non_important_dv=20,
                queries=10, open_long=3, pages_entered=40, pages_late=20),
    "106": Site("CRO-C", None, 5, screened=0),
}
SF_AE_DELAY = 3  # one more AE, on a screen failure of site 101: a report, but not on-study exposure


def _iso(d: date) -> str:
    return d.isoformat()


def _subject(site: str, k: int) -> str:
    return f"OPS-{site}-{k:02d}"


def _screening_date(k: int) -> date:
    return date(2023, 12, 1) + timedelta(days=2 * k)


def _course(spec: Site, k: int) -> str:
    if k < spec.screen_failures:
        return "screen failure"
    k -= spec.screen_failures
    return "discontinued" if k < spec.discontinued else "completed" if k < spec.discontinued + spec.completed else "ongoing"


def ops_rows() -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {d: [] for d in ("dm", "sv", "ae", "ds", "dv", "sites", "queries", "crf_pages")}
    for site, spec in SITES.items():
        rows["sites"].append({"SITEID": site, "SITENAME": f"Site {site}", "COUNTRY": "USA", "CRO": spec.cro,
                              "SELECTED_DATE": "2023-11-01", "ACTIVATION_DATE": spec.activated,
                              "TARGET_ENROLLMENT": spec.target})
        randomized = []
        for k in range(spec.screened):
            usubjid, course = _subject(site, k), _course(spec, k)
            arm = ("SCRNFAIL", "Screen Failure") if course == "screen failure" else \
                (("PBO", "Placebo") if k % 2 == 0 else ("TRT", "Treatment"))
            rows["dm"].append({"USUBJID": usubjid, "SITEID": site, "AGE": 50.0, "SEX": "F", "ARMCD": arm[0], "ARM": arm[1],
                               "ACTARMCD": arm[0], "ACTARM": arm[1], "COUNTRY": "USA",
                               "RFICDTC": _iso(_screening_date(k)),
                               "RFSTDTC": None if course == "screen failure" else _iso(START)})
            seq = 1.0
            if course == "screen failure":
                rows["ds"].append({"USUBJID": usubjid, "DSSEQ": seq, "DSTERM": SF_REASONS[k % 2], "DSDECOD": "SCREEN FAILURE",
                                   "DSCAT": "DISPOSITION EVENT", "DSSTDTC": "2024-01-12"})
                rows["sv"].append({"USUBJID": usubjid, "VISITNUM": 1.0, "VISIT": "SCREENING", "SVSTDTC": _iso(_screening_date(k))})
                continue
            randomized.append(usubjid)
            rows["sv"].append({"USUBJID": usubjid, "VISITNUM": 2.0, "VISIT": "BASELINE", "SVSTDTC": _iso(START)})
            if course == "ongoing":
                rows["sv"].append({"USUBJID": usubjid, "VISITNUM": 3.0, "VISIT": "WEEK 50", "SVSTDTC": _iso(DATA_CUT)})
            else:
                decod, when = ("ADVERSE EVENT", DISCONTINUED_ON) if course == "discontinued" else ("COMPLETED", COMPLETED_ON)
                rows["ds"].append({"USUBJID": usubjid, "DSSEQ": seq, "DSTERM": decod, "DSDECOD": decod,
                                   "DSCAT": "DISPOSITION EVENT", "DSSTDTC": _iso(when)})
        for j, delay in enumerate(spec.report_delays):
            rows["ae"].append(_ae(randomized[j % len(randomized)], 100.0 + j, serious=j < spec.serious, delay=delay))
        subjects = [_subject(site, k) for k in range(spec.screened)]  # deviations of screen failures count too
        for j in range(spec.important_dv + spec.non_important_dv):
            rows["dv"].append({"USUBJID": subjects[j % len(subjects)], "DVSEQ": 100.0 + j, "DVTERM": "deviation",
                               "DVSCAT": "IMPORTANT" if j < spec.important_dv else "NON-IMPORTANT", "DVSTDTC": "2024-04-01"})
        for j in range(spec.queries):
            opened, closed = ("2024-06-01", None) if j < spec.open_long else \
                ("2024-12-20", None) if j < spec.open_long + spec.open_recent else ("2024-06-01", "2024-06-06")
            rows["queries"].append({"QUERYID": f"Q{site}-{j}", "SITEID": site, "USUBJID": subjects[0], "QUERY_TYPE": "AUTO",
                                    "OPENED_DTC": opened, "CLOSED_DTC": closed, "STATUS": "CLOSED" if closed else "OPEN"})
        for j in range(spec.pages_entered):
            entry = date(2024, 6, 16) if j < spec.pages_late else date(2024, 6, 3)
            rows["crf_pages"].append(_page(site, subjects[0], f"P{j}", date(2024, 6, 1), entry))
        if spec.screened:  # never entered: one overdue at the cut (late), one too recent to judge
            rows["crf_pages"].append(_page(site, subjects[0], "OVERDUE", date(2024, 11, 1), None))
            rows["crf_pages"].append(_page(site, subjects[0], "RECENT", date(2024, 12, 25), None))
    rows["ae"].append(_ae(_subject("101", 0), 1.0, serious=False, delay=SF_AE_DELAY))
    return rows


def _ae(usubjid: str, seq: float, serious: bool, delay: int) -> dict[str, Any]:
    soc, hlgt = ("Cardiac disorders", "Cardiac arrhythmias") if serious else ("Nervous system disorders", "Headaches")
    return {"USUBJID": usubjid, "AESEQ": seq, "AETERM": "event", "AEDECOD": "Event", "AEBODSYS": soc, "AEHLGT": hlgt,
            "AESEV": "MILD", "AESER": "Y" if serious else "N", "AESTDTC": _iso(AE_ONSET),
            "AEENTDTC": _iso(AE_ONSET + timedelta(days=delay))}


def _page(site: str, usubjid: str, page: str, visit: date, entry: date | None) -> dict[str, Any]:
    return {"SITEID": site, "USUBJID": usubjid, "CRFPAGE": page, "VISITNUM": 2.0, "VISIT_DATE": _iso(visit),
            "ENTRY_DATE": entry and _iso(entry)}


QTL_YAML = """
qtl:
  - {name: discontinuation, kri: discontinuation_rate, limit: 0.15, direction: above}
  - {name: query floor, kri: query_rate, limit: 22, direction: below}
"""


# --------------------------------------------------------------------------- building the lake
def write_bronze_frames(lake: Path, tenant: str, study: str, frames: dict[str, pl.DataFrame]) -> None:
    """Frames (with their 1-based source row) -> bronze as the ingest types them, without its GX
    validation (which takes longer than this whole module may); absent domains as empty files."""
    from trialsynth.ingest.bronze import (
        bronze_dir,
        empty_domain_frame,
        to_bronze_frame,
        write_domains_index,
        write_parquet_atomic,
    )
    from trialsynth.ingest.validation import coerce_to_spec

    for name, spec in DOMAINS.items():
        bronze = empty_domain_frame(spec)
        if name in frames:
            typed, *_, problems = coerce_to_spec(frames[name], spec, f"{name}.file")  # (typed, [text,] problems)
            assert not problems, problems[:3]
            bronze = to_bronze_frame(typed, spec, tenant, study, "test-drop", f"{name}.file")
        write_parquet_atomic(bronze, bronze_dir(lake, tenant, study) / f"{name}.parquet")
    write_domains_index(bronze_dir(lake, tenant, study), tenant, study, {name: frames[name].height for name in frames})


def demo_frames() -> dict[str, pl.DataFrame]:
    from trialsynth.demo.generator import generate_study
    from trialsynth.ingest.readers import SOURCE_ROW

    tables = generate_study(*DEMO, n_subjects=600, n_sites=12, seed=7)
    return {name: pl.from_pandas(tables[name]).with_columns(pl.int_range(1, len(tables[name]) + 1, dtype=pl.Int64).alias(SOURCE_ROW))
            for name in DOMAINS}


def cdisc_frames() -> dict[str, pl.DataFrame]:
    from trialsynth.domains import domain_for_file_stem
    from trialsynth.ingest.readers import read_file

    frames = {}
    for path in sorted(CDISC_SDTM.iterdir()):
        spec = domain_for_file_stem(path.stem)
        if spec is not None and path.suffix in (".xpt", ".csv"):
            frames[spec.name] = read_file(path)[0]
    return frames


def write_analytics_tables(lake: Path) -> None:
    """The lead's analytics assets' outputs, for the ops partition only (the others have none)."""
    study = lake / OPS[0] / OPS[1]

    def write(relpath: str, columns: dict[str, list]) -> None:
        (study / relpath).parent.mkdir(parents=True, exist_ok=True)
        n = len(next(iter(columns.values())))
        pl.DataFrame({"tenant_id": [OPS[0]] * n, "study_id": [OPS[1]] * n, **columns}).write_parquet(study / relpath)

    write("design/power_curves.parquet", {
        "scenario": ["s1", "s1", "s1"], "endpoint": ["continuous"] * 3, "axis": ["n_per_arm"] * 3, "x": [50.0, 100.0, 100.0],
        "power": [0.5, 0.8, 0.79], "method": ["analytic", "analytic", "simulation"], "mc_se": [None, None, 0.01]})
    write("design/recommendations.parquet", {
        "scenario": ["s1"], "endpoint": ["continuous"], "effect": [-5.0], "alpha": [0.05], "sided": [2], "target_power": [0.8],
        "ratio": [1.0], "dropout": [0.1], "n_per_arm_control": [99], "n_per_arm_treatment": [99], "total_n": [198],
        "enrol_control": [110], "enrol_treatment": [110], "total_enrol": [220], "events": [None],
        "analytic_power": [0.80], "simulated_power": [0.79], "simulated_mc_se": [0.01], "seed": [1]})
    write("imputation/delta.parquet", {
        "variable": ["SYSBP"], "imputer": ["knn"], "n_observed": [90], "n_imputed": [10], "pre_mean": [140.0],
        "post_mean": [139.5], "pre_sd": [12.0], "post_sd": [11.5], "delta_mean": [-0.5], "wasserstein": [0.7]})
    write("missingness/little.parquet", {
        "variable_group": ["VS"], "statistic": [12.5], "df": [8], "p_value": [0.13], "n_patterns": [4], "n_rows": [100], "n_variables": [3],
        "conclusion": ["no evidence against MCAR"]})
    write("evidence/run-1/metrics.parquet", {
        "run_id": ["run-1"] * 3, "metric": ["wasserstein", "wasserstein", "detection_auc"], "variable": ["AGE", "SYSBP", "all"],
        "value": [0.2, 1.4, 0.6], "threshold_warn": [0.5, 0.5, 0.75], "threshold_fail": [1.0, 1.0, 0.9],
        "level": ["pass", "fail", "pass"], "created_at": ["2024-12-31T10:00:00+00:00"] * 3})
    write("evidence/run-1/closest_records.parquet", {
        "run_id": ["run-1"] * 3, "synthetic_row": [0, 0, 1], "rank": [1, 2, 1], "real_row": [4, 7, 2],
        "distance": [0.05, 0.3, 0.9], "holdout_p5": [0.1] * 3, "nearer_than_holdout_p5": [True, False, False]})
    write("audit/lineage_status.parquet", {
        "verified_at": ["2024-12-31T10:00:00+00:00"], "status": ["verified"], "manifests": [12], "checkpoints": [1],
        "outputs_checked": [11], "problems": [0], "warnings": [1], "first_broken_link": pl.Series([None], dtype=pl.String),
        "store": ["file:///lake/lineage"]})
    write("imputation/donors.parquet", {
        "USUBJID": ["O-001", "O-001"], "VISITNUM": [2.0, 2.0], "VISIT": ["WEEK 2"] * 2, "VARIABLE": ["VS_SYSBP"] * 2,
        "FILLED_VALUE": [131.0, 131.0], "DONOR_RANK": [1, 2], "DONOR_USUBJID": ["O-002", "O-003"],
        "DONOR_VISITNUM": [2.0, 2.0], "DONOR_VISIT": ["WEEK 2"] * 2, "DISTANCE": [0.4, 0.6], "N_COMMON": [5, 5],
        "DONOR_VALUE": [130.0, 132.0], "WEIGHT": [0.5, 0.5], "METHOD": ["donors"] * 2})


def materialize_rbqm_assets(root: Path, partitions: list[str]) -> None:
    from assets.rbqm import km_discontinuation, qtl_limits
    from orchestration.partitions import TENANT_STUDY
    from orchestration.resources import LakeResource, LineageResource

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANT_STUDY, partitions)
    resources = {"lake": LakeResource(data_dir=str(root)), "lineage": LineageResource(lake_dir=str(root / "lake"))}
    for key in partitions:
        result = dg.materialize([qtl_limits, km_discontinuation], partition_key=key, resources=resources, instance=instance)
        assert result.success


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, bool]]:
    root = tmp_path_factory.mktemp("ops")
    lake = root / "lake"
    (root / "studies").mkdir()
    (root / "studies" / f"{OPS[1]}.yaml").write_text(QTL_YAML)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_LAKE_DIR", str(lake))
        mp.setenv("TRIALSYNTH_WAREHOUSE_PATH", str(root / "warehouse.duckdb"))
        mp.setenv("TRIALSYNTH_STUDIES_DIR", str(root / "studies"))
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        get_settings.cache_clear()
        write_bronze(lake, *OPS, ops_rows())
        write_bronze_frames(lake, *DEMO, demo_frames())
        has_cdisc = CDISC_SDTM.is_dir()
        if has_cdisc:
            write_bronze_frames(lake, *CDISC, cdisc_frames())
        write_analytics_tables(lake)
        partitions = ["|".join(OPS), "|".join(DEMO)] + (["|".join(CDISC)] if has_cdisc else [])
        materialize_rbqm_assets(root, partitions)
        result = run_dbt(["build", "--indirect-selection", "cautious", "--select", *(f"+{m}" for m in NEW_MODELS)],
                         root / "target")
        # warnings are data findings by design (site 102's AE entered before onset, the pilot's
        # duplicated subject visit); every mart and star-schema test must pass
        problems = [f"{r.node.name}: {r.status} {r.message}" for r in result.result
                    if str(r.status) not in ("success", "pass", "warn")]
        assert result.success and not problems, problems or result.exception
        yield root, has_cdisc
    get_settings.cache_clear()


def rows(root: Path, sql: str) -> list[tuple]:
    return query(root / "warehouse.duckdb", sql)


def kri(root: Path, tenant: str, name: str) -> dict[str, dict[str, Any]]:
    with_names = rows(root, f"""
        select site_id, numerator, denominator, rate, study_rate, z_unadjusted, overdispersion_phi, z_score, flag,
               qtl_name, qtl_limit, qtl_breached, site_exceeds_qtl, cro
        from mart_kri_qtl where tenant_id = '{tenant}' and kri = '{name}'""")
    keys = ("numerator", "denominator", "rate", "study_rate", "z_unadjusted", "phi", "z_score", "flag", "qtl_name",
            "qtl_limit", "qtl_breached", "site_exceeds_qtl", "cro")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in with_names}


# --------------------------------------------------------------------------- expected values, by hand
def subject_days(spec: Site) -> int:
    ongoing = spec.randomized - spec.discontinued - spec.completed
    return (spec.discontinued * ((DISCONTINUED_ON - START).days + 1) + spec.completed * ((COMPLETED_ON - START).days + 1)
            + ongoing * ((DATA_CUT - START).days + 1))


def funnel_z(num: np.ndarray, den: np.ndarray, model: str, min_den: int, unit_variance: float | None = None,
             winsor: float = 0.1) -> tuple[np.ndarray, float, np.ndarray]:
    """The documented method, written out: (z, phi, z_adjusted) with NaN for unscored sites."""
    p0 = num.sum() / den.sum()
    var = {"poisson": p0, "binomial": p0 * (1 - p0), "mean": unit_variance}[model]
    expected = {"poisson": p0 * den, "binomial": min(p0, 1 - p0) * den, "mean": np.full(den.shape, np.inf)}[model]
    scored = (den > 0) & (den >= min_den) & (expected >= 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(scored, (num / den - p0) / np.sqrt(var / den), np.nan)
    phi = 1.0
    if scored.sum() >= 2:
        low, high = np.quantile(z[scored], [winsor, 1 - winsor])
        phi = max(1.0, float((np.clip(z[scored], low, high) ** 2).sum() / (scored.sum() - 1)))
    return z, phi, z / np.sqrt(phi)


def flag_of(z: float) -> str:
    return "insufficient" if np.isnan(z) else "alarm" if abs(z) >= 3 else "warn" if abs(z) >= 2 else "ok"


WITH_SUBJECTS = [s for s, spec in SITES.items() if spec.screened]


# --------------------------------------------------------------------------- tests
def test_rbqm_assets_write_lake_tables_and_lineage(built: tuple[Path, bool]) -> None:
    from trialsynth.lineage import LocalLineageStore

    root, _ = built
    qtl = pl.read_parquet(root / "lake" / OPS[0] / OPS[1] / "rbqm" / "qtl_limits.parquet")
    assert qtl.select("tenant_id", "qtl_name", "kri", "qtl_limit", "direction").rows() == [
        ("ops", "discontinuation", "discontinuation_rate", 0.15, "above"), ("ops", "query floor", "query_rate", 22.0, "below")]
    assert pl.read_parquet(root / "lake" / DEMO[0] / DEMO[1] / "rbqm" / "qtl_limits.parquet").height == 0  # no config
    lineage = LocalLineageStore(root / "lake").read(*OPS)
    km = next(r for r in lineage if r["asset_key"] == "km_discontinuation")
    assert set(km["input_sha256s"]) == {"bronze/dm", "bronze/ds", "bronze/sv"}
    assert next(r for r in lineage if r["asset_key"] == "qtl_limits")["input_sha256s"].keys() == {"OPS-01.yaml"}


def test_subject_days_and_rates_match_hand_counts(built: tuple[Path, bool]) -> None:
    root, _ = built
    # 101: 2 x 61 (discontinued day 60) + 10 x 183 (completed day 182) + 6 x 352 (ongoing to the cut)
    assert subject_days(SITES["101"]) == 4064
    expected = {
        "ae_rate": {s: (len(p.report_delays), subject_days(p)) for s, p in SITES.items()},
        "sae_rate": {s: (p.serious, subject_days(p)) for s, p in SITES.items()},
        "important_pd_rate": {s: (p.important_dv, subject_days(p)) for s, p in SITES.items()},
        "non_important_pd_rate": {s: (p.non_important_dv, subject_days(p)) for s, p in SITES.items()},
        "discontinuation_rate": {s: (p.discontinued, p.randomized) for s, p in SITES.items()},
        "screen_fail_rate": {s: (p.screen_failures, p.screened) for s, p in SITES.items()},
        "query_rate": {s: (p.queries, p.pages_entered) for s, p in SITES.items()},
        "query_open_30d_rate": {s: (p.open_long, p.queries) for s, p in SITES.items()},  # 2024-12-20 is 11 days old
        # + the overdue never-entered page; the recent one cannot be judged yet
        "late_crf_entry_rate": {s: (p.pages_late + 1, p.pages_entered + 1) if p.screened else (0, 0) for s, p in SITES.items()},
        # the screen failure's AE counts as a report; 102's entry before onset does not
        "ae_reporting_days": {s: (sum(d for d in p.report_delays if d >= 0) + (SF_AE_DELAY if s == "101" else 0),
                                  sum(d >= 0 for d in p.report_delays) + (s == "101")) for s, p in SITES.items()},
    }
    scale = {"ae_rate": 1000, "sae_rate": 1000, "important_pd_rate": 1000, "non_important_pd_rate": 1000, "query_rate": 100}
    for name, by_site in expected.items():
        got = kri(root, "ops", name)
        assert {s: (g["numerator"], g["denominator"]) for s, g in got.items()} == by_site, name
        study = sum(n for n, _ in by_site.values()) / sum(d for _, d in by_site.values()) * scale.get(name, 1)
        for site, (num, den) in by_site.items():
            assert got[site]["rate"] == (pytest.approx(scale.get(name, 1) * num / den) if den else None), (name, site)
            assert got[site]["study_rate"] == pytest.approx(study), name
    assert {g["cro"] for g in kri(root, "ops", "ae_rate").values()} == {"CRO-A", "CRO-B", "CRO-C"}


def test_screen_fail_z_scores_by_hand(built: tuple[Path, bool]) -> None:
    root, _ = built
    got = kri(root, "ops", "screen_fail_rate")
    # p0 = 24/100; z = (p - 0.24) / sqrt(0.24 * 0.76 / 20) for 2, 3, 4, 3, 12 failures of 20;
    # winsorized at the 10/90 % quantiles of those five z -> phi = sum(z_w^2) / 4 = 1.978
    z = (np.array([2, 3, 4, 3, 12]) / 20 - 0.24) / np.sqrt(0.24 * 0.76 / 20)
    assert z == pytest.approx([-1.4660, -0.9424, -0.4189, -0.9424, 3.7697], abs=1e-4)
    # winsorized: z_1 -> -1.2566 (10 %), z_5 -> 2.0943 (90 %); squares sum to 7.9167
    assert got["105"]["phi"] == pytest.approx(7.9167 / 4, abs=1e-4)
    assert got["105"]["z_score"] == pytest.approx(2.6796, abs=1e-4)
    assert [got[s]["flag"] for s in ("101", "102", "103", "104", "105", "106")] == \
        ["ok", "ok", "ok", "ok", "warn", "insufficient"]  # 106 screened nobody


@pytest.mark.parametrize(("name", "model", "min_den"), [
    ("ae_rate", "poisson", 1000), ("sae_rate", "poisson", 1000), ("important_pd_rate", "poisson", 1000),
    ("non_important_pd_rate", "poisson", 1000), ("discontinuation_rate", "binomial", 10),
    ("query_rate", "poisson", 100), ("query_open_30d_rate", "binomial", 20), ("late_crf_entry_rate", "binomial", 100),
    ("screen_fail_rate", "binomial", 10), ("ae_reporting_days", "mean", 10),
])
def test_z_scores_and_flags_follow_the_documented_method(built: tuple[Path, bool], name: str, model: str, min_den: int) -> None:
    root, _ = built
    got = kri(root, "ops", name)
    sites = sorted(got)
    num = np.array([got[s]["numerator"] for s in sites], float)
    den = np.array([got[s]["denominator"] for s in sites], float)
    variance = None
    if model == "mean":
        reports = [d for s, p in SITES.items() for d in (*p.report_delays, *([SF_AE_DELAY] if s == "101" else [])) if d >= 0]
        variance = statistics.variance(reports)
    z, phi, z_adj = funnel_z(num, den, model, min_den, variance)
    for i, site in enumerate(sites):
        assert got[site]["flag"] == flag_of(z_adj[i]), (name, site)
        if np.isnan(z[i]):
            assert got[site]["z_score"] is None
        else:
            assert (got[site]["z_unadjusted"], got[site]["z_score"], got[site]["phi"]) == \
                pytest.approx((z[i], z_adj[i], phi), rel=1e-9), (name, site)


def test_expected_events_rule_and_outlier_flags(built: tuple[Path, bool]) -> None:
    root, _ = built
    # 105's important deviations: 3 observed, 6/15965 x 1314 = 0.49 expected (< 1) -> no z
    assert kri(root, "ops", "important_pd_rate")["105"]["flag"] == "insufficient"
    # 20 non-important deviations where 2.96 are expected: an alarm even after phi (~9.9)
    non_important = kri(root, "ops", "non_important_pd_rate")["105"]
    assert non_important["flag"] == "alarm" and non_important["phi"] > 5
    assert kri(root, "ops", "discontinuation_rate")["105"]["flag"] == "insufficient"  # 8 randomized < 10


def test_qtl_breaches_by_study_and_site(built: tuple[Path, bool]) -> None:
    root, _ = built
    disc = kri(root, "ops", "discontinuation_rate")  # study 15/76 = 0.197 > 0.15
    assert {s: (g["qtl_name"], g["qtl_limit"], g["qtl_breached"]) for s, g in disc.items()} == \
        {s: ("discontinuation", 0.15, True) for s in SITES}
    assert {s: g["site_exceeds_qtl"] for s, g in disc.items()} == \
        {"101": False, "102": True, "103": True, "104": False, "105": True, "106": None}  # 106: no rate
    queries = kri(root, "ops", "query_rate")  # 109 per 500 pages = 21.8 < 22: a breach of a floor
    assert all(g["qtl_breached"] is True for g in queries.values())
    assert {s: g["site_exceeds_qtl"] for s, g in queries.items() if s != "106"} == \
        {"101": True, "102": True, "103": False, "104": True, "105": False}
    assert {g["qtl_name"] for g in kri(root, "ops", "ae_rate").values()} == {None}


def test_enrollment_burn_down_reasons_and_funnel(built: tuple[Path, bool]) -> None:
    root, _ = built
    last = rows(root, """
        select site_id, category, actual_cumulative, target_cumulative from mart_enrollment
        where tenant_id = 'ops' and metric = 'enrollment' and week_start = '2024-12-30'""")
    assert {(s, c): a for s, c, a, _ in last} == {
        **{(s, "randomized"): p.randomized for s, p in SITES.items()}, **{(s, "screened"): p.screened for s, p in SITES.items()}}
    assert {s: t for s, c, _, t in last if c == "randomized"} == {s: p.target for s, p in SITES.items() if p.activated} | {"106": None}
    # first week = Monday before the first activation / screening (2023-12-01); last = the cut's
    assert rows(root, """select count(distinct week_start), min(week_start), max(week_start) from mart_enrollment
                         where tenant_id = 'ops' and metric = 'enrollment'""") == [(58, date(2023, 11, 27), date(2024, 12, 30))]
    # planned end = last screening 2023-12-01 + 2 x 19 days = 2024-01-08; site 101 activated
    # 2023-12-01: by Sunday 2023-12-17 (16 days of 38) 20 x 16/38 are targeted; 10 were screened
    # (every second day from 2023-12-01), none randomized yet
    mid = rows(root, """select category, actual_cumulative, target_cumulative from mart_enrollment
                        where tenant_id = 'ops' and site_id = '101' and week_start = '2023-12-11' order by 1""")
    assert mid[0][:2] == ("randomized", 0) and mid[0][2] == pytest.approx(20 * 16 / 38)
    assert mid[1][:2] == ("screened", 9)
    reasons = dict(rows(root, """select category, sum(value) from mart_enrollment
                                 where tenant_id = 'ops' and metric = 'screen_fail_reason' group by 1"""))
    failures = [k for p in SITES.values() for k in range(p.screen_failures)]
    assert reasons == {SF_REASONS[0]: sum(k % 2 == 0 for k in failures), SF_REASONS[1]: sum(k % 2 == 1 for k in failures)}
    funnel = rows(root, """select category, sum(value) from mart_enrollment
                           where tenant_id = 'ops' and metric = 'funnel' group by 1, sort_order order by sort_order""")
    assert funnel == [("selected", 6), ("activated", 5), ("first_screened", 5), ("first_randomized", 5)]


def test_safety_by_arm_and_soc(built: tuple[Path, bool]) -> None:
    root, _ = built
    fixture = ops_rows()
    arm_of = {r["USUBJID"]: r["ACTARM"] for r in fixture["dm"]}
    by_arm = Counter(arm_of[a["USUBJID"]] for a in fixture["ae"])
    serious = Counter(arm_of[a["USUBJID"]] for a in fixture["ae"] if a["AESER"] == "Y")
    got = rows(root, """select arm, sum(n_events), sum(n_serious), sum(n_serious) / sum(n_events) from mart_safety
                        where tenant_id = 'ops' group by arm""")
    assert {a: (n, s) for a, n, s, _ in got} == {a: (by_arm[a], serious[a]) for a in by_arm}
    assert set(by_arm) == {"Placebo", "Treatment", "Screen Failure"}
    # site 103's headaches (its non-serious AEs) per arm: the median of their reporting delays
    delays: dict[str, list[int]] = {}
    for a in fixture["ae"]:
        if a["USUBJID"].startswith("OPS-103-") and a["AESER"] == "N":
            delays.setdefault(arm_of[a["USUBJID"]], []).append((date.fromisoformat(a["AEENTDTC"]) - AE_ONSET).days)
    headaches = rows(root, """select arm, n_events, median_days_to_report, hlgt from mart_safety
                              where tenant_id = 'ops' and site_id = '103' and soc = 'Nervous system disorders'""")
    assert {a: (n, m, h) for a, n, m, h in headaches} == \
        {a: (len(d), statistics.median(d), "Headaches") for a, d in delays.items()}


def test_kaplan_meier_mart_by_arm(built: tuple[Path, bool]) -> None:
    root, _ = built
    fixture = ops_rows()
    arm_of = {r["USUBJID"]: r["ARM"] for r in fixture["dm"] if r["ARMCD"] != "SCRNFAIL"}
    stopped = Counter(arm_of[d["USUBJID"]] for d in fixture["ds"] if d["DSDECOD"] == "ADVERSE EVENT")
    n = Counter(arm_of.values())
    got = rows(root, "select arm, time_days, survival, at_risk, events from mart_km_discontinuation "
                     "where tenant_id = 'ops' order by arm, time_days")
    for arm in n:
        curve = [r[1:] for r in got if r[0] == arm]
        # everyone starts 2024-01-15; discontinuations on day 60, completions (censored) day 182,
        # the rest censored at their last visit (day 351)
        assert [t for t, *_ in curve] == [0, 60, 182, 351]
        assert curve[0][1:] == (1.0, n[arm], 0)
        assert curve[1][1:] == (pytest.approx(1 - stopped[arm] / n[arm]), n[arm], stopped[arm])


def test_design_imputation_and_evidence_marts(built: tuple[Path, bool]) -> None:
    root, _ = built
    assert rows(root, "select tenant_id, count(*), min(recommended_n_per_arm), max(recommended_n_per_arm) "
                      "from mart_power_curves group by 1") == [("ops", 3, 110, 110)]
    assert rows(root, "select variable, imputer, delta_mean, wasserstein from mart_imputation_delta") == [("SYSBP", "knn", -0.5, 0.7)]
    assert rows(root, "select variable_group, df, p_value, conclusion from mart_little_mcar") == [("VS", 8, 0.13, "no evidence against MCAR")]
    assert rows(root, "select run_id, variable, distance, alert_level from mart_wasserstein order by 2") == [
        ("run-1", "AGE", 0.2, "pass"), ("run-1", "SYSBP", 1.4, "fail")]


def test_demo_outlier_site_is_flagged_on_protocol_deviations(built: tuple[Path, bool]) -> None:
    root, _ = built
    outlier = "112"  # the generator's last SITEID gets 4x deviations (DemoConfig.outlier_site)
    for name in ("important_pd_rate", "non_important_pd_rate"):
        got = kri(root, "demo", name)
        assert got[outlier]["flag"] in ("warn", "alarm"), (name, got[outlier])
        assert max(got, key=lambda s: got[s]["z_score"] if got[s]["z_score"] is not None else -99) == outlier
    assert kri(root, "demo", "non_important_pd_rate")[outlier]["flag"] == "alarm"
    names = {r[0] for r in rows(root, "select distinct kri from mart_kri_qtl where tenant_id = 'demo'")}
    from models.rbqm import KRIS

    assert names == set(KRIS)  # a study with every domain has every KRI of the QTL vocabulary
    assert rows(root, "select distinct kri, unit from mart_kri_qtl where tenant_id = 'demo' order by 1") == sorted(KRIS.items())


def test_cdisc_pilot_marts_build_without_edc_tables(built: tuple[Path, bool]) -> None:
    root, has_cdisc = built
    if not has_cdisc:
        pytest.skip(f"the CDISC pilot is not available at {CDISC_SDTM}")
    names = {r[0] for r in rows(root, "select distinct kri from mart_kri_qtl where tenant_id = 'cdisc'")}
    # no DV, query log, CRF page log or AE entry dates: those KRIs are absent, not zeros
    assert names == {"ae_rate", "sae_rate", "discontinuation_rate", "screen_fail_rate"}
    assert rows(root, "select count(*), count(cro) from mart_kri_qtl where tenant_id = 'cdisc'") == [(4 * 17, 0)]
    assert rows(root, "select sum(numerator), sum(denominator) from mart_kri_qtl "
                      "where tenant_id = 'cdisc' and kri = 'discontinuation_rate'") == [(144, 254)]
    funnel = {r[0] for r in rows(root, "select distinct category from mart_enrollment where tenant_id = 'cdisc' and metric = 'funnel'")}
    assert funnel == {"first_screened", "first_randomized"}
    assert rows(root, "select count(target_cumulative), max(actual_cumulative) from mart_enrollment "
                      "where tenant_id = 'cdisc' and category = 'randomized'") == [(0, 41)]  # site 701
    assert rows(root, "select sum(n_events), count(hlgt), count(median_days_to_report) from mart_safety "
                      "where tenant_id = 'cdisc'")[0][::2] == (1191, 0)
    assert {r[0] for r in rows(root, "select distinct arm from mart_km_discontinuation where tenant_id = 'cdisc'")} == \
        {"Placebo", "Xanomeline High Dose", "Xanomeline Low Dose"}


def _comparable(records: list[tuple]) -> list[tuple]:
    """Rows in one order with floats to 6 decimals (the engines sum in different orders)."""
    out = [tuple(round(v, 6) if isinstance(v, float) else v for v in map(_normalise, r)) for r in records]
    return sorted(out, key=repr)


def test_clickhouse_sql_of_new_models_matches_duckdb_on_chdb(built: tuple[Path, bool]) -> None:
    chdb_session = pytest.importorskip("chdb.session")
    root, _ = built
    target = root / "target_clickhouse"
    assert_success(run_dbt(["compile", "--target", "clickhouse", "--no-populate-cache", "--indirect-selection", "empty",
                            "--select", *(f"+{m}" for m in NEW_MODELS)], target))
    manifest = json.loads((target / "manifest.json").read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    session = chdb_session.Session()
    session.query("CREATE DATABASE IF NOT EXISTS trialsynth")
    session.query("SET join_use_nulls = 1")
    created: set[str] = set()

    def create(name: str) -> None:
        if name in created:
            return
        node = models[name]
        for parent in node["depends_on"]["nodes"]:
            if parent.startswith("model."):
                create(parent.split(".")[-1])
        kind, engine = ("VIEW", "") if node["config"]["materialized"] == "view" else ("TABLE", " ENGINE = Memory")
        session.query(f"CREATE {kind} trialsynth.{name}{engine} AS {node['compiled_code']}")
        created.add(name)

    for name in NEW_MODELS:
        create(name)
        ch = session.query(f"SELECT * FROM trialsynth.{name}", "DataFrame")
        with __import__("duckdb").connect(str(root / "warehouse.duckdb")) as con:
            cur = con.execute(f"select * from {name}")
            dk, columns = cur.fetchall(), [d[0] for d in cur.description]
        assert list(ch.columns) == columns, name
        assert len(dk) > 0, name
        assert _comparable(list(ch.itertuples(index=False, name=None))) == _comparable(dk), name
