"""The one place trialsynth's Dagster ``Definitions`` are assembled.

Storage (SQLite under DAGSTER_HOME or Postgres) is chosen by ``$DAGSTER_HOME/dagster.yaml``, which
``trialsynth`` writes from the settings object; nothing here changes between the embedded default and
the scale-out stack.

Every run process and every code-server reload imports this module, so it stays cheap (3.3-3.7 s of
CPU on an idle machine, 9.5-10.2 s before issue 14: benchmarks/results/full_size.md; budget in
tests/test_definitions_load.py): torch, scikit-learn, scipy, matplotlib and Great Expectations are
imported inside the assets that use them, and the dbt manifest is parsed once at install, not here
(assets/warehouse.py). What is left is mostly Dagster and dagster-dbt with dbt-core (2.1 s), which the
dbt assets cannot be declared without, and pandas/polars; see :func:`_lean_imports` for the two
measures taken there.
"""

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

OPTIONAL_SLOW_IMPORTS = ("rfc3987_syntax",)


@contextmanager
def _lean_imports() -> Iterator[None]:
    """Import the code location without two costs that buy nothing here (measured in
    benchmarks/results/full_size.md, section "Definitions load"):

    - jsonschema (dbt-core's dependency, so dagster-dbt's) imports ``rfc3987_syntax`` when it is
      installed, only to offer an optional "iri" format checker, and that module compiles an Earley
      grammar at import: about 1 s of CPU on every load. Only the dev extra installs it (cyclonedx-bom's
      validation) and no Dagster process validates "iri" formats, so jsonschema is imported without it
      here (``import rfc3987_syntax`` itself still works afterwards).
    - Python's cyclic garbage collector runs hundreds of times while some 10^6 objects are created by
      the imports, finding nothing to free: it is paused until the definitions are built.
    """
    blocked = [m for m in OPTIONAL_SLOW_IMPORTS if "jsonschema" not in sys.modules and m not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # an ImportError for jsonschema's optional import
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def _definitions() -> "dg.Definitions":
    import dagster as dg
    from dagster_dbt import DbtCliResource

    from assets import design, imputation, ingest, missingness, rbqm, study_data, synthesis, warehouse
    from assets import lineage as lineage_assets
    from orchestration.api_jobs import API_JOBS, LOGGERS
    from orchestration.jobs import approved_generation_job, marts_refresh_job, study_pipeline_job
    from orchestration.resources import LakeResource, LineageResource, RegistryResource
    from orchestration.schedules import marts_automation, nightly_marts_refresh
    from orchestration.sensors import approval_sensor, landing_sensor
    from trialsynth.security import check_keys
    from trialsynth.settings import get_settings

    settings = get_settings()
    check_keys(settings)  # refuse to load with a missing, wrong or destroyed tenant key (docs/security.md)
    return dg.Definitions(
        assets=[*dg.load_assets_from_modules([ingest, study_data, missingness, imputation, synthesis, design, rbqm]),
                *warehouse.dbt_steps, lineage_assets.lineage_verification],
        jobs=[study_pipeline_job, approved_generation_job, marts_refresh_job, lineage_assets.lineage_verification_job,
              *API_JOBS],
        sensors=[landing_sensor, approval_sensor, marts_automation],
        schedules=[nightly_marts_refresh, lineage_assets.nightly_lineage_verification],
        loggers=LOGGERS,  # API runs select the trace logger (orchestration/api_jobs.py)
        resources={
            "lake": LakeResource(),
            "lineage": LineageResource(store=settings.lineage.store),
            "registry": RegistryResource(),  # the settings' registry when used (empty url)
            # dbt from this interpreter's venv, whether or not the venv is on PATH
            "dbt": DbtCliResource(project_dir=warehouse.dbt_project, target=settings.warehouse.target,
                                  dbt_executable=str(Path(sys.executable).parent / "dbt")),
        },
    )


with _lean_imports():
    defs = _definitions()
