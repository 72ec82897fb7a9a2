"""Missingness profiling of a study's vital signs and labs (per tenant/study partition)."""

import dagster as dg
import pandas as pd

from assets.study_data import load_study_data, missingness_metadata, study_matrix
from orchestration.partitions import tenant_study_partitions
from orchestration.resources import LakeResource, LineageResource
from trialsynth.markdown import md_table
from trialsynth.version import code_version

ALPHA = 0.05


def reported_profile(cells: pd.DataFrame) -> pd.DataFrame:
    """% missing per variable x visit x site of the scheduled cells of ``StudyData.cells``: the
    scheduled rows of dbt's mart_missingness (variable named ``<DOMAIN>_<TESTCD>``, visit = VISITNUM)."""
    from models.missingness import missingness_profile

    scheduled = cells[cells["SCHEDULED"]]  # unscheduled cells are not "missing"
    return missingness_profile(scheduled.assign(VALUE=scheduled["OBSERVED"].where(scheduled["OBSERVED"])), variable_col="VARIABLE",
                               visit_col="VISITNUM", site_col="SITEID", value_col="VALUE")


def domain_groups(matrix: pd.DataFrame, scheduled: pd.DataFrame):
    """(group, frame) per domain prefix (VS_, LB_): the visits where that domain is collected,
    unscheduled cells as NaN, index dropped."""
    for prefix in sorted({c.split("_", 1)[0] for c in matrix.columns}):
        cols = [c for c in matrix.columns if c.startswith(prefix + "_")]
        rows = scheduled[cols].any(axis=1)
        frame = matrix.loc[rows, cols].where(scheduled.loc[rows, cols]).reset_index(drop=True)
        usable = [c for c in cols if frame[c].nunique() > 1]
        if len(usable) >= 2:
            yield prefix, frame[usable]


@dg.asset(
    partitions_def=tenant_study_partitions,
    group_name="imputation",
    deps=[study_matrix],
    kinds={"python", "parquet"},
    description="% missing per variable x visit x site of the scheduled cells (every variable and visit, by "
    "the rules of dbt's mart_missingness: the numbers Superset shows; metadata `left_out_of_matrix` says which "
    "of them the imputation matrix does not hold), and, on the imputation matrix, missing-data patterns, "
    "Little's MCAR test (EM estimates) and MAR diagnostics (cross-validated AUC of predicting each variable's "
    "missingness).",
)
def missingness_profile(context: dg.AssetExecutionContext, lake: LakeResource, lineage: LineageResource) -> dg.MaterializeResult:
    # scikit-learn (MAR diagnostics) is imported here, not when the Dagster definitions load
    from models.missingness import little_mcar_test, mar_diagnostics, missing_patterns

    pk = context.partition_key
    data = load_study_data(lake, pk)
    profile = reported_profile(data.cells)
    scheduled = data.matrix.where(data.scheduled)
    patterns = missing_patterns(scheduled.reset_index(drop=True))
    # Vital signs and labs are scheduled at different visits: test each domain on the visits where
    # it is collected, so the protocol's structure is not mistaken for informative missingness.
    little_rows, mar_parts = [], []
    for group, frame in domain_groups(data.matrix, data.scheduled):
        little = little_mcar_test(frame)
        conclusion = (f"reject MCAR at alpha {ALPHA}: missingness depends on the data (MAR or MNAR)"
                      if little.p_value < ALPHA else f"no evidence against MCAR at alpha {ALPHA}")
        little_rows.append({"variable_group": group, "statistic": little.statistic, "df": little.df,
                            "p_value": little.p_value, "n_patterns": little.n_patterns, "n_rows": frame.shape[0],
                            "n_variables": frame.shape[1], "conclusion": conclusion})
        mar_parts.append(mar_diagnostics(frame, random_state=0).assign(variable_group=group))
    little_table = pd.DataFrame(little_rows)
    mar = pd.concat(mar_parts, ignore_index=True).sort_values("auc", ascending=False)
    out = {}
    for name, frame in {"profile": profile, "patterns": patterns, "little": little_table, "mar": mar}.items():
        out[name] = lake.write_table(pk, f"missingness/{name}.parquet", frame)
    lineage.record(pk, asset_key="missingness_profile", input_sha256s={}, output_sha256=out["profile"][1], output_path=out["profile"][0],
                   code_version=code_version(), parameters={"scheduled_share": 0.5, "alpha": ALPHA,
                                                             "outputs": {k: v[1] for k, v in out.items()}})
    return dg.MaterializeResult(metadata={
        "little_mcar": dg.MetadataValue.md(md_table(little_table.to_dict("records"))),
        "little_min_p_value": float(little_table["p_value"].min()),
        **missingness_metadata(data),
        "variables": int(profile["variable"].nunique()),
        "matrix_variables": scheduled.shape[1],
        "mar_diagnostics": dg.MetadataValue.md(md_table(mar.head(15).to_dict("records"))),
        "top_patterns": dg.MetadataValue.md(md_table(patterns.head(5).to_dict("records"))),
        "profile": dg.MetadataValue.path(str(out["profile"][0])),
    })
