"""How the marts stay current without anyone pressing a button.

- ``marts_automation`` (on by default): Dagster declarative automation over the dbt assets. Every dbt
  model carries ``AutomationCondition.eager()`` (assets/warehouse.py, the translator), so when an
  upstream asset of a study is updated outside a full pipeline run (a backfill, an analytics asset
  re-materialized from the UI or the API), the marts built from it are requested for that study's
  partition once nothing upstream is missing or still running. The daemon (``make ui``) evaluates it
  every 30 s.
- ``nightly_marts_refresh`` (on by default): rebuilds the RBQM inputs and every mart of every registered
  study at 02:00 UTC, which picks up what automation does not see: changed dbt SQL, and the study
  configs the RBQM assets read.
- ``nightly_lineage_verification`` (on by default; declared beside its job in assets/lineage.py):
  verifies every lineage chain at 03:30 UTC and writes the lineage status files, from which
  ``marts_automation`` (their upstream was updated) and the next marts refresh rebuild
  ``mart_lineage_status`` ("lineage verified at <time>").
"""

import dagster as dg

from orchestration.jobs import marts_refresh_job
from orchestration.partitions import TENANT_STUDY

marts_automation = dg.AutomationConditionSensorDefinition(
    "marts_automation", target=dg.AssetSelection.groups("dbt"), default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes a study's dbt marts when an asset upstream of them was updated (eager conditions).")


@dg.schedule(job=marts_refresh_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def nightly_marts_refresh(context: dg.ScheduleEvaluationContext):
    """Nightly refresh of the marts for every registered tenant/study (picks up late dbt changes)."""
    date = context.scheduled_execution_time.strftime("%Y-%m-%d")
    for key in context.instance.get_dynamic_partitions(TENANT_STUDY):
        yield dg.RunRequest(run_key=f"{key}:{date}", partition_key=key)
