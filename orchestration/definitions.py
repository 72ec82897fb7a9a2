"""The one place trialsynth's Dagster ``Definitions`` are assembled.

Storage (SQLite under DAGSTER_HOME or Postgres) is chosen by ``$DAGSTER_HOME/dagster.yaml``, which
``trialsynth`` writes from the settings object; nothing here changes between the embedded default and
the scale-out stack.

Every run process and every code-server reload imports this module, so it stays cheap (under 3 s of CPU,
tests/test_definitions_load.py): torch, scikit-learn, scipy, matplotlib and Great Expectations are
imported inside the assets that use them, and the dbt manifest is parsed once at install, not here
(assets/warehouse.py).
"""

import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from assets import design, imputation, ingest, missingness, rbqm, study_data, synthesis, warehouse
from assets import lineage as lineage_assets
from orchestration.api_jobs import API_JOBS
from orchestration.jobs import marts_refresh_job, study_pipeline_job
from orchestration.resources import LakeResource, LineageResource, RegistryResource
from orchestration.schedules import marts_automation, nightly_marts_refresh
from orchestration.sensors import landing_sensor
from trialsynth.security import check_keys
from trialsynth.settings import get_settings

_settings = get_settings()
# Refuse to load with a missing, wrong-length or wrong tenant key (docs/security.md, "Refuse to start");
# on a fresh embedded install this only reads settings (the keyring is made on first use).
check_keys(_settings)

defs = dg.Definitions(
    assets=[*dg.load_assets_from_modules([ingest, study_data, missingness, imputation, synthesis, design, rbqm]),
            *warehouse.dbt_steps,
            lineage_assets.lineage_verification],
    jobs=[study_pipeline_job, marts_refresh_job, lineage_assets.lineage_verification_job, *API_JOBS],
    sensors=[landing_sensor, marts_automation],
    schedules=[nightly_marts_refresh, lineage_assets.nightly_lineage_verification],
    resources={
        "lake": LakeResource(),
        "lineage": LineageResource(store=_settings.lineage.store),
        "registry": RegistryResource(url=_settings.registry_url),
        # dbt from this interpreter's venv, whether or not the venv is on PATH
        "dbt": DbtCliResource(project_dir=warehouse.dbt_project, target=_settings.warehouse.target,
                              dbt_executable=str(Path(sys.executable).parent / "dbt")),
    },
)
