"""Jobs: the full per-study pipeline, and the analytics refresh the nightly schedule runs."""

import dagster as dg

from orchestration.partitions import tenant_study_partitions

study_pipeline_job = dg.define_asset_job(
    "study_pipeline",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("lineage"),  # lineage: its own nightly job
    partitions_def=tenant_study_partitions,
    description="Everything for one tenant/study: raw zone, bronze, validation, analytics, dbt marts.",
)

approved_generation_job = dg.define_asset_job(
    "approved_generation",
    selection=dg.AssetSelection.assets("synthetic_cohort").downstream(),
    partitions_def=tenant_study_partitions,
    description="The synthetic cohort (and its evidence pack) of a study whose model was approved while the study "
    "waited for it; launched by the approval sensor with the approved model's id.",
)

marts_refresh_job = dg.define_asset_job(
    "marts_refresh",
    selection=dg.AssetSelection.groups("dbt", "rbqm"),
    partitions_def=tenant_study_partitions,
    description="Rebuild the RBQM inputs (QTL limits, KM) and the dbt star schema and marts of a tenant/study.",
)
