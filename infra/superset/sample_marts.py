"""A synthetic two-tenant warehouse with every dashboard mart, for the Superset tests and benchmark.

The marts have the planned columns of the dashboards spec (``superset_config/dashboards.yaml``)
and sizes that follow the study size the way the dbt marts do (sites x variables x visits for
missingness, sites x weeks for enrollment, ...), so chart queries can be tested and timed before
every dbt mart exists. Tenant ``acme`` is a generated study with ``n_subjects`` subjects (50 per
site); tenant ``cdisc`` mimics the CDISC pilot: no deviations, query log or site table, so its RBQM
and activation rows are absent and ``mart_data_availability`` says so. Deterministic in ``seed``.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from infra.superset.spec import load_spec

VS_CODES = ["SYSBP", "DIABP", "PULSE", "RESP", "TEMP", "WEIGHT", "HEIGHT", "BMI", "SPO2", "WAIST"]
LB_CODES = ["ALT", "AST", "ALP", "BILI", "ALB", "CREAT", "BUN", "GLUC", "CHOL", "TRIG", "HGB", "HCT", "WBC", "PLAT",
            "NEUT", "LYM", "SODIUM", "K", "CL", "CA"]
VARIABLES = [*VS_CODES, *LB_CODES]  # 30 test codes
DOMAIN_OF = {**dict.fromkeys(VS_CODES, "VS"), **dict.fromkeys(LB_CODES, "LB")}
VISITS = [(1.0, "SCREENING"), (2.0, "BASELINE"), *((float(i + 3), f"WEEK {w}") for i, w in enumerate((2, 4, 8, 12, 16, 20, 24)))]
# kri -> (label, unit) as mart_kri_qtl has them (units: models/rbqm/qtl.py KRIS)
KRI_DEFS = {
    "ae_rate": ("Adverse events", "per 1,000 subject-days"),
    "sae_rate": ("Serious adverse events", "per 1,000 subject-days"),
    "important_pd_rate": ("Important protocol deviations", "per 1,000 subject-days"),
    "non_important_pd_rate": ("Non-important protocol deviations", "per 1,000 subject-days"),
    "discontinuation_rate": ("Study discontinuation", "share of randomized subjects"),
    "query_rate": ("Queries", "per 100 CRF pages entered"),
    "query_open_30d_rate": ("Queries open > 30 days at the data cut", "share of queries"),
    "late_crf_entry_rate": ("CRF pages entered > 10 days after the visit", "share of CRF pages"),
    "screen_fail_rate": ("Screen failures", "share of screened subjects"),
    "ae_reporting_days": ("AE reporting time (onset to EDC entry)", "mean days"),
}
KRIS = list(KRI_DEFS)
KRIS_WITHOUT_EDC_LOGS = ["ae_rate", "sae_rate", "discontinuation_rate", "screen_fail_rate", "ae_reporting_days"]
# MedDRA SOC -> HLGTs (names, as AEBODSYS / AEHLGT carry them)
MEDDRA = {
    "Gastrointestinal disorders": ["Gastrointestinal signs and symptoms", "Gastrointestinal motility and defaecation conditions"],
    "Nervous system disorders": ["Headaches", "Neurological disorders NEC"],
    "General disorders and administration site conditions": ["General system disorders NEC", "Administration site reactions"],
    "Infections and infestations": ["Infections - pathogen unspecified", "Viral infectious disorders"],
    "Skin and subcutaneous tissue disorders": ["Epidermal and dermal conditions", "Skin appendage conditions"],
    "Musculoskeletal and connective tissue disorders": ["Joint disorders", "Muscle disorders"],
    "Respiratory, thoracic and mediastinal disorders": ["Respiratory disorders NEC", "Upper respiratory tract disorders (excl infections)"],
    "Cardiac disorders": ["Cardiac arrhythmias", "Coronary artery disorders"],
    "Psychiatric disorders": ["Sleep disorders and disturbances", "Anxiety disorders and symptoms"],
    "Metabolism and nutrition disorders": ["Appetite and general nutritional disorders", "Glucose metabolism disorders (incl diabetes mellitus)"],
}
DOMAINS = ["dm", "sv", "vs", "lb", "ae", "ds", "dv", "sites", "queries", "crf_pages"]


def _study(rng: np.random.Generator, tenant: str, study: str, n_subjects: int, edc_logs: bool) -> dict[str, pd.DataFrame]:
    n_sites = max(2, n_subjects // 50)
    sites = [f"{101 + i}" for i in range(n_sites)]
    cros = [f"CRO-{'AB'[i % 3]}" if i % 3 < 2 else None for i in range(n_sites)]  # every third site: no CRO
    key = {"tenant_id": tenant, "study_id": study}
    out: dict[str, pd.DataFrame] = {}

    grid = pd.MultiIndex.from_product([sites, VARIABLES, range(len(VISITS))], names=["site_id", "variable", "v"]).to_frame(index=False)
    grid["n_expected"] = rng.integers(20, 60, len(grid))
    # labs are drawn at screening and every other visit: elsewhere a lab is mostly absent (not scheduled)
    unscheduled = grid["variable"].map(DOMAIN_OF).eq("LB").to_numpy() & (grid["v"].to_numpy() % 2 == 1)
    grid["n_missing"] = rng.binomial(grid["n_expected"], np.where(unscheduled, 0.95, rng.beta(1, 12, len(grid))))
    share = (grid.assign(obs=grid["n_expected"] - grid["n_missing"]).groupby(["variable", "v"])[["obs", "n_expected"]]
             .transform("sum"))
    out["mart_missingness"] = pd.DataFrame({
        **key, "site_id": grid["site_id"], "domain": grid["variable"].map(DOMAIN_OF), "variable": grid["variable"],
        "visitnum": [VISITS[v][0] for v in grid["v"]], "visit": [VISITS[v][1] for v in grid["v"]],
        "n_expected": grid["n_expected"], "n_observed": grid["n_expected"] - grid["n_missing"],
        "n_missing": grid["n_missing"], "pct_missing": 100 * grid["n_missing"] / grid["n_expected"],
        "is_scheduled": share["obs"] >= 0.5 * share["n_expected"]})

    n_weeks = 60 + n_subjects // 200
    weeks = [date(2024, 1, 1) + timedelta(weeks=w) for w in range(n_weeks)]
    trend = pd.MultiIndex.from_product([VARIABLES, weeks], names=["variable", "week_start"]).to_frame(index=False)
    trend["n_expected_week"] = rng.integers(10, 40 + n_subjects // 20, len(trend))
    trend["n_missing_week"] = rng.binomial(trend["n_expected_week"], 0.08)
    grouped = trend.groupby("variable")
    out["mart_missingness_trend"] = pd.DataFrame({
        **key, "domain": trend["variable"].map(DOMAIN_OF), "variable": trend["variable"],
        "time_basis": "crf_entry_date" if edc_logs else "observation_date", "week_start": trend["week_start"],
        "n_expected_week": trend["n_expected_week"], "n_missing_week": trend["n_missing_week"],
        "cum_expected": grouped["n_expected_week"].cumsum(), "cum_missing": grouped["n_missing_week"].cumsum()})
    out["mart_missingness_trend"]["cum_pct_missing"] = (100 * out["mart_missingness_trend"]["cum_missing"]
                                                         / out["mart_missingness_trend"]["cum_expected"])
    out["mart_missingness_trend"]["cum_expected_scheduled"] = out["mart_missingness_trend"]["cum_expected"]
    out["mart_missingness_trend"]["cum_missing_scheduled"] = out["mart_missingness_trend"]["cum_missing"]

    out["mart_data_availability"] = pd.DataFrame({
        **key, "domain": DOMAINS,
        "is_present": [edc_logs or d not in ("dv", "sites", "queries", "crf_pages") for d in DOMAINS],
        "row_count": rng.integers(100, 10 * n_subjects, len(DOMAINS))})
    out["mart_data_availability"].loc[~out["mart_data_availability"]["is_present"], "row_count"] = 0
    out["mart_data_availability"]["availability"] = np.where(
        out["mart_data_availability"]["is_present"], "available", "not available for this study")

    out["mart_wasserstein"] = pd.DataFrame({
        **key, "run_id": np.repeat([f"run-{i}" for i in range(5)], len(VARIABLES)), "variable": VARIABLES * 5,
        "distance": rng.gamma(2.0, 0.05, 5 * len(VARIABLES))})
    out["mart_wasserstein"]["alert_level"] = pd.cut(out["mart_wasserstein"]["distance"], [-1, 0.15, 0.25, np.inf],
                                                    labels=["pass", "warn", "fail"]).astype(str)
    out["mart_wasserstein"]["threshold_warn"], out["mart_wasserstein"]["threshold_fail"] = 0.15, 0.25

    kris = KRIS if edc_logs else KRIS_WITHOUT_EDC_LOGS
    kri = pd.MultiIndex.from_product([range(n_sites), kris], names=["s", "kri"]).to_frame(index=False)
    kri["denominator"] = rng.integers(200, 5000, len(kri)).astype(float)
    study_rate = {k: rng.uniform(0.01, 0.1) for k in kris}
    base = kri["kri"].map(study_rate)
    outlier = kri["s"] == n_sites - 1  # the last site is the seeded outlier, as in the demo generator
    kri["numerator"] = rng.poisson(kri["denominator"] * base * np.where(outlier, 3.0, 1.0)).astype(float)
    kri["rate"] = kri["numerator"] / kri["denominator"]
    kri["z_score"] = (kri["rate"] - base) / np.sqrt(base * (1 - base) / kri["denominator"] * 1.5)
    z = kri["z_score"].abs()
    kri["flag"] = np.select([kri["denominator"] < 300, z >= 3, z >= 2], ["insufficient", "alarm", "warn"], "ok")
    qtl = kri["kri"].isin(["important_pd_rate", "discontinuation_rate"])
    sums = kri.groupby("kri")[["numerator", "denominator"]].transform("sum")
    limit = base * np.where(kri["kri"] == "important_pd_rate", 0.9, 1.5)  # one QTL breached study-wide
    out["mart_kri_qtl"] = pd.DataFrame({
        **key, "site_id": [sites[s] for s in kri["s"]], "cro": [cros[s] for s in kri["s"]] if edc_logs else None,
        "kri": kri["kri"], "kri_label": kri["kri"].map(lambda k: KRI_DEFS[k][0]),
        "unit": kri["kri"].map(lambda k: KRI_DEFS[k][1]), "numerator": kri["numerator"],
        "denominator": kri["denominator"], "rate": kri["rate"], "study_rate": base, "z_score": kri["z_score"],
        "flag": kri["flag"], "qtl_name": np.where(qtl, kri["kri"] + " QTL", None),
        "qtl_limit": np.where(qtl, limit, np.nan),
        "qtl_breached": np.where(qtl, sums["numerator"] / sums["denominator"] > limit, None),
        "site_exceeds_qtl": np.where(qtl, kri["rate"] > limit, None)})

    enr = pd.MultiIndex.from_product([range(n_sites), range(n_weeks)], names=["s", "w"]).to_frame(index=False)
    per_week = rng.uniform(0.2, 1.2, n_sites)
    enr["actual"] = rng.poisson(per_week[enr["s"]]).astype(int)
    burn = pd.DataFrame({
        **key, "week_start": [weeks[w] for w in enr["w"]], "site_id": [sites[s] for s in enr["s"]],
        "cro": [cros[s] for s in enr["s"]], "actual_cumulative": enr.groupby("s")["actual"].cumsum(),
        "target_cumulative": np.round((enr["w"] + 1) * 0.8).astype(int), "metric": "enrollment",
        "category": "randomized", "sort_order": None, "value": enr["actual"]})
    reasons = ["INCLUSION/EXCLUSION CRITERIA NOT MET", "WITHDRAWAL BY SUBJECT", "PHYSICIAN DECISION", "OTHER"]
    screen = pd.DataFrame({**key, "week_start": None, "site_id": sites[0], "cro": None, "actual_cumulative": None,
                           "target_cumulative": None, "metric": "screen_fail_reason", "category": reasons,
                           "sort_order": None, "value": rng.integers(5, n_subjects // 10 + 10, len(reasons)).astype(float)})
    parts = [burn, screen]
    if edc_logs:
        stages = pd.MultiIndex.from_product([range(n_sites), range(4)], names=["s", "k"]).to_frame(index=False)
        parts.append(pd.DataFrame({
            **key, "week_start": None, "site_id": [sites[s] for s in stages["s"]], "cro": None,
            "actual_cumulative": None, "target_cumulative": None, "metric": "funnel",
            "category": stages["k"].map(dict(enumerate(["selected", "activated", "first_screened", "first_randomized"]))),
            "sort_order": stages["k"] + 1, "value": (stages["k"] <= 3 - stages["s"] % 3).astype(float)}))
    out["mart_enrollment"] = pd.concat(parts, ignore_index=True)

    km = []
    for arm, hazard, offset in (("Placebo", 0.0012, 0.0), ("Xanomab 50 mg", 0.0018, 0.5)):
        t = np.arange(0, 169, 1.0) + offset  # each arm has its own event times, as in a real KM table
        at_risk = np.maximum(1, np.round(n_subjects / 2 * np.exp(-hazard * t))).astype(int)
        events = rng.binomial(at_risk, hazard)
        survival = np.cumprod(1 - events / at_risk)
        km.append(pd.DataFrame({**key, "arm": arm, "time_days": t, "survival": survival, "at_risk": at_risk,
                                "events": events, "censored": 0, "ci_lower": survival * 0.95,
                                "ci_upper": np.minimum(1, survival * 1.05)}))
    out["mart_km_discontinuation"] = pd.concat(km, ignore_index=True)

    terms = [(soc, hlgt) for soc, hlgts in MEDDRA.items() for hlgt in hlgts]
    saf = pd.MultiIndex.from_product([range(len(terms)), ["Placebo", "Xanomab 50 mg"]], names=["t", "arm"]).to_frame(index=False)
    saf["soc"] = [terms[t][0] for t in saf["t"]]
    saf["n_events"] = rng.poisson(n_subjects / 200 + 1, len(saf))
    saf["n_subjects"] = np.minimum(saf["n_events"], rng.poisson(n_subjects / 300 + 1, len(saf)))
    saf["n_serious"] = rng.binomial(saf["n_events"], 0.05)
    days = rng.gamma(2, 3, len(saf))
    out["mart_safety"] = pd.DataFrame({
        **key, "site_id": sites[0], "cro": cros[0] if edc_logs else None, "arm": saf["arm"], "soc": saf["soc"],
        "hlgt": [terms[t][1] if edc_logs else None for t in saf["t"]], "n_events": saf["n_events"],
        "n_subjects": saf["n_subjects"], "n_serious": saf["n_serious"],
        "sae_proportion": saf["n_serious"] / np.maximum(saf["n_events"], 1), "n_reported_with_date": saf["n_events"] if edc_logs else 0,  # the CDISC pilot has no AE entry date
        "total_days_to_report": days * saf["n_events"] if edc_logs else None,
        "median_days_to_report": days if edc_logs else None})

    curves = []
    # (scenario, endpoint, design effect, effect grid, analysable N per arm); tte: hazard ratios
    designs = (("base", "continuous", 5.0, np.linspace(1, 10, 24), 64), ("pessimistic", "continuous", 3.5,
               np.linspace(1, 10, 24), 129), ("base", "tte", 0.7, np.linspace(0.5, 0.95, 24), 247))
    for scenario, endpoint, effect, grid, n_analysable in designs:
        size = abs(np.log(effect)) if endpoint == "tte" else effect / 10
        n = np.linspace(10, 4 * n_analysable, 36)
        curves.append(pd.DataFrame({"scenario": scenario, "endpoint": endpoint, "axis": "n_per_arm", "x": n,
                                    "power": 1 - np.exp(-n * size**2 / 5), "n": n_analysable, "effect": effect}))
        sizes = np.abs(np.log(grid)) if endpoint == "tte" else grid / 10
        curves.append(pd.DataFrame({"scenario": scenario, "endpoint": endpoint, "axis": "effect", "x": grid,
                                    "power": 1 - np.exp(-n_analysable * sizes**2 / 5), "n": n_analysable,
                                    "effect": effect}))
    pc = pd.concat(curves, ignore_index=True)
    enrol = np.ceil(pc["n"] / 0.9).astype(int)  # 10 % dropout
    out["mart_power_curves"] = pd.DataFrame({
        **key, "scenario": pc["scenario"], "endpoint": pc["endpoint"], "axis": pc["axis"], "x": pc["x"],
        "power": pc["power"], "method": "analytic", "mc_se": np.nan, "recommended_n_per_arm": enrol,
        "recommended_n_treatment": enrol, "evaluable_n_control": pc["n"], "evaluable_n_treatment": pc["n"],
        "design_effect": pc["effect"], "dropout": 0.1})
    # closest imputation: 40 filled cells with 3 donors each; closest records: 3 per synthetic row
    cells = pd.DataFrame({"usubjid": [f"{study}-{i % 25:03d}" for i in range(40)],
                          "v": rng.integers(0, len(VISITS), 40), "variable": rng.choice(VS_CODES, 40)})
    donors = cells.loc[cells.index.repeat(3)].reset_index(drop=True)
    donors["donor_rank"] = np.tile([1, 2, 3], 40)
    donors["donor_value"] = rng.normal(120, 12, len(donors))
    out["mart_imputation_donors"] = pd.DataFrame({
        **key, "usubjid": donors["usubjid"], "visitnum": [VISITS[v][0] for v in donors["v"]],
        "visit": [VISITS[v][1] for v in donors["v"]], "variable": donors["variable"],
        "filled_value": donors.groupby(donors.index // 3)["donor_value"].transform("mean"),
        "donor_rank": donors["donor_rank"], "donor_usubjid": [f"{study}-{int(x):03d}" for x in rng.integers(25, 99, len(donors))],
        "donor_visitnum": [VISITS[v][0] for v in donors["v"]], "donor_visit": [VISITS[v][1] for v in donors["v"]],
        "distance": np.sort(rng.gamma(2, 0.3, (40, 3)), axis=1).ravel(), "n_common": 8,
        "donor_value": donors["donor_value"], "weight": 1 / 3, "method": "donors"})
    closest = pd.MultiIndex.from_product([range(60), [1, 2, 3]], names=["synthetic_row", "rank"]).to_frame(index=False)
    closest["distance"] = np.sort(rng.gamma(3, 0.4, (60, 3)), axis=1).ravel()
    out["mart_closest_records"] = pd.DataFrame({
        **key, "run_id": "run-4", "synthetic_row": closest["synthetic_row"], "rank": closest["rank"],
        "real_row": rng.integers(0, n_subjects, len(closest)), "distance": closest["distance"], "holdout_p5": 0.35,
        "nearer_than_holdout_p5": closest["distance"] < 0.35,
        "privacy_status": np.where(closest["distance"] < 0.35, "FAIL", "PASS")})
    return out


def build_sample_warehouse(path: Path, n_subjects: int = 150, cdisc_subjects: int = 254, seed: int = 0,
                           omit: tuple[str, ...] = ("mart_imputation_delta", "mart_little_mcar")) -> dict[str, dict[str, int]]:
    """Write the two-tenant warehouse to ``path`` (replaced); returns rows per mart and tenant.

    ``omit``: marts left out, as when their dbt models do not exist yet (publish then serves an
    empty placeholder). Marts of the spec with no generator here are left out as well.
    """
    rng = np.random.default_rng(seed)
    studies = [_study(rng, "acme", "ACME-001", n_subjects, edc_logs=True),
               _study(rng, "cdisc", "CDISCPILOT01", cdisc_subjects, edc_logs=False)]
    spec = load_spec()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    counts: dict[str, dict[str, int]] = {}
    con = duckdb.connect(str(path))
    try:
        for mart in studies[0]:
            if mart in omit:
                continue
            frame = pd.concat([s[mart] for s in studies], ignore_index=True)[list(spec.datasets[mart].columns)]
            con.register("frame", frame)
            cols = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in spec.datasets[mart].columns.items())
            con.execute(f'CREATE TABLE "{mart}" AS SELECT {cols} FROM frame')
            con.unregister("frame")
            counts[mart] = frame.groupby("tenant_id").size().to_dict()
    finally:
        con.close()
    return counts


def load_into_clickhouse(warehouse: Path, client, database: str) -> dict[str, int]:
    """Copy every ``mart_*`` table of the DuckDB ``warehouse`` into ClickHouse ``database`` (created;
    tables replaced) as dbt's ClickHouse target lays them out: MergeTree partitioned by (tenant_id,
    study_id), sorted by them, Nullable columns. ``client``: clickhouse-connect. Returns rows per table."""
    from infra.superset.publish_clickhouse import clickhouse_type

    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    rows = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        marts = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                           "WHERE starts_with(table_name, 'mart_') ORDER BY 1").fetchall()]
        for mart in marts:
            types = con.execute(f'DESCRIBE "{mart}"').fetchall()
            columns = ", ".join(f"`{name}` {clickhouse_type(dtype)}" for name, dtype, *_ in types)
            client.command(f"DROP TABLE IF EXISTS `{database}`.`{mart}`")
            client.command(f"CREATE TABLE `{database}`.`{mart}` ({columns}) ENGINE = MergeTree "
                           "PARTITION BY (tenant_id, study_id) ORDER BY (tenant_id, study_id) "
                           "SETTINGS allow_nullable_key = 1")
            client.insert_arrow(f"`{database}`.`{mart}`", con.sql(f'SELECT * FROM "{mart}"').to_arrow_table())
            rows[mart] = client.command(f"SELECT count() FROM `{database}`.`{mart}`")
    return rows
