"""Nightly refresh of the marts for every registered tenant/study (picks up late dbt changes)."""

import dagster as dg

from orchestration.jobs import marts_refresh_job
from orchestration.partitions import TENANT_STUDY


@dg.schedule(job=marts_refresh_job, cron_schedule="0 2 * * *", execution_timezone="UTC")
def nightly_marts_refresh(context: dg.ScheduleEvaluationContext):
    date = context.scheduled_execution_time.strftime("%Y-%m-%d")
    for key in context.instance.get_dynamic_partitions(TENANT_STUDY):
        yield dg.RunRequest(run_key=f"{key}:{date}", partition_key=key)
