"""Jobs the product API launches (trialsynth/api/jobs.py): one per kind of API job, so each is visible
by name in the Dagster UI, queued under the same run-queue limits as every run, and configured only by
run config (the assets' ``SynthesisRunConfig`` / ``ImputationRunConfig`` and the simulation's request).

- ``api_synth_train``: synthesizer_model of a tenant|study partition, and what it is built from after
  ingest (the study matrix);
- ``api_synth_generate``: synthetic_cohort and its evidence_pack;
- ``api_impute``: (study matrix ->) missingness_profile -> imputation_benchmark -> imputed_dataset;
- ``api_power_simulation``: simulation-based power for one design (no partition: it reads no study data);
  the report is the op's output metadata ``report``.

Every run the API launches selects the logger :data:`TRACE_LOGGER` in its run config (trialsynth/api/jobs.py):
each log record of its asset ops becomes a JSON line on stderr (the run's compute logs) with the
``trace_id`` and ``tenant_id`` of the API request, read from the run tags ``trialsynth/trace_id`` and
``trialsynth/tenant`` that every record carries, so the request, the run and its ops share one trace id.
It is registered once for all jobs (orchestration/definitions.py); runs that do not select it keep
Dagster's console logger.
"""

import logging
import sys
from typing import Any

import dagster as dg

from orchestration.partitions import tenant_study_partitions

INGEST = dg.AssetSelection.groups("ingest")  # raw zone and bronze are the sensor's: API jobs start after them
TRAIN_JOB, GENERATE_JOB, IMPUTE_JOB, SIMULATE_JOB = "api_synth_train", "api_synth_generate", "api_impute", "api_power_simulation"

api_synth_train_job = dg.define_asset_job(
    TRAIN_JOB, selection=dg.AssetSelection.assets("synthesizer_model").upstream() - INGEST,
    partitions_def=tenant_study_partitions,
    description="API: train (or reuse) the study's synthesizer with the request's synthesizer, seed and schema.")
api_synth_generate_job = dg.define_asset_job(
    GENERATE_JOB, selection=dg.AssetSelection.assets("synthetic_cohort", "evidence_pack"),
    partitions_def=tenant_study_partitions,
    description="API: a conditional cohort from one registered model, and its evidence pack.")
api_impute_job = dg.define_asset_job(
    IMPUTE_JOB, selection=dg.AssetSelection.assets("imputed_dataset").upstream() - INGEST,
    partitions_def=tenant_study_partitions,
    description="API: missingness report, imputer comparison under the request's assumptions, imputed dataset.")


class PowerSimulationConfig(dg.Config):
    """The API's power request (trialsynth.api.power.PowerRequest, as JSON)."""

    request: dict[str, Any]


@dg.op(description="Simulated (and analytic) power curves and recommended N per arm for one design.")
def simulate_power_curves(context: dg.OpExecutionContext, config: PowerSimulationConfig) -> dg.Output[dict]:
    from trialsynth.api.power import PowerRequest, power_report  # the API's own request model and report

    request = PowerRequest.model_validate(config.request)
    context.log.info(f"simulating {request.simulations} trials per point ({request.endpoint}, seed {request.seed})")
    report = power_report(request)
    return dg.Output(report, metadata={"report": dg.MetadataValue.json(report),
                                       "recommended": dg.MetadataValue.json(report["recommended"])})


@dg.job(name=SIMULATE_JOB, description="API: simulation-based power for one design.")
def api_power_simulation_job() -> None:
    simulate_power_curves()


API_JOBS = [api_synth_train_job, api_synth_generate_job, api_impute_job, api_power_simulation_job]

TRACE_LOGGER = "trialsynth_trace"
DAGSTER_EXTRAS = {"dagster_meta", "dagster_event", "dagster_event_batch_metadata"}  # objects, not JSON: left out
TRACE_TAG, TENANT_TAG = "trialsynth/trace_id", "trialsynth/tenant"


def _with_run_tags(record: logging.LogRecord) -> bool:
    """Put the run's trace id, tenant, run, step and event on the record (Dagster attaches its
    ``dagster_meta``, the run tags included, to every record it hands a logger)."""
    meta = getattr(record, "dagster_meta", None) or {}
    tags = meta.get("job_tags") or {}
    event = meta.get("dagster_event")
    record.trace_id, record.tenant_id = tags.get(TRACE_TAG), tags.get(TENANT_TAG)
    record.run_id, record.step_key = meta.get("run_id"), meta.get("step_key")
    record.event = getattr(event, "event_type_value", None)
    if "orig_message" in meta:  # the user's message, not Dagster's "job - run - step - event - message" line
        record.msg, record.args = meta["orig_message"], ()
    return True


@dg.logger(description="JSON lines on stderr with the API request's trace id and tenant (from the run tags).")
def trace_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    from trialsynth.api.observability import JsonFormatter  # at run time: keeps the Definitions load lean

    class RunJsonFormatter(JsonFormatter):
        _STANDARD = JsonFormatter._STANDARD | DAGSTER_EXTRAS

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_with_run_tags)
    handler.setFormatter(RunJsonFormatter())
    logger = logging.Logger(f"trialsynth.run.{init_context.run_id}", logging.DEBUG)  # as Dagster's console; unregistered
    logger.addHandler(handler)
    return logger


LOGGERS = {"console": dg.colored_console_logger, TRACE_LOGGER: trace_logger}
"""The loggers every job may select (Definitions' default loggers); without a selection Dagster uses its console."""
