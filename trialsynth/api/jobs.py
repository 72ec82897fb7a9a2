"""API jobs: each one a Dagster run of a job of :mod:`orchestration.api_jobs`, recorded per tenant.

The API never runs the work: :meth:`JobService.create` launches the run (Dagster's run queue decides
when it starts) and records the job; :meth:`JobService.get` / :meth:`JobService.list` read the run's
status from Dagster (GraphQL) and, once the run has finished, its outputs, which are then kept with
the job. Outputs per kind:

- ``train``: ``model_id`` and its status (link ``/synth/v1/models/{id}``);
- ``generate``: ``batch_id`` (the run id), the model, rows, the cohort location and the evidence pack
  (link ``/evidence/v1/runs/{batch_id}``);
- ``impute``: the missingness report, the chosen imputer, the imputed dataset location and the lineage
  of the run (its manifests, and the raw-zone drop the bronze input came from);
- ``simulate``: the power report.

Locations are ``lake:<tenant>/<study>/...`` (relative to the lake, whichever store holds it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from orchestration.api_jobs import GENERATE_JOB, IMPUTE_JOB, SIMULATE_JOB, TRACE_LOGGER, TRAIN_JOB
from orchestration.partitions import TENANT_STUDY
from trialsynth.api.dagster import DagsterClient, DagsterRejected, DagsterUnavailable, RunInfo
from trialsynth.api.observability import run_trace_tags, trace_id_var
from trialsynth.api.problems import ProblemError, not_found, unavailable
from trialsynth.api.store import jobs_table as J
from trialsynth.api.store import now, utc
from trialsynth.names import partition_key
from trialsynth.settings import Settings

JOB_NAMES = {"train": TRAIN_JOB, "generate": GENERATE_JOB, "impute": IMPUTE_JOB, "simulate": SIMULATE_JOB}
STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
FINISHED = {"succeeded", "failed", "canceled"}
_FROM_DAGSTER = {"QUEUED": "queued", "NOT_STARTED": "queued", "STARTING": "queued", "MANAGED": "queued",
                 "STARTED": "running", "CANCELING": "running", "SUCCESS": "succeeded", "FAILURE": "failed",
                 "CANCELED": "canceled"}


def job_status(dagster_status: str) -> str:
    return _FROM_DAGSTER.get(dagster_status, "queued")


def dagster_problem(exc: DagsterUnavailable | DagsterRejected) -> ProblemError:
    if isinstance(exc, DagsterUnavailable):
        return unavailable(f"the orchestrator is unavailable ({exc}); retry with the same Idempotency-Key",
                           exc.retry_after)
    return ProblemError(502, "orchestrator-refused", "Orchestrator refused the run", str(exc))


class JobService:
    def __init__(self, settings: Settings, engine: Engine, dagster: DagsterClient) -> None:
        self.settings, self.engine, self.dagster = settings, engine, dagster

    # -- creating --------------------------------------------------------------------------------
    def create(self, tenant: str, kind: str, study: str | None, request: dict, run_config: dict,
               job_id: str) -> dict:
        """Launch the run of job ``job_id`` (a retry finds the run it launched before) and record it. The run
        carries the request's trace in its tags and logs through the trace logger (orchestration/api_jobs.py)."""
        job_name = JOB_NAMES[kind]
        tags = {"trialsynth/tenant": tenant, "trialsynth/api_kind": kind, **run_trace_tags()}
        if study is not None:
            tags["trialsynth/study"] = study
        try:
            if job_name != SIMULATE_JOB:
                key = partition_key(tenant, study)
                self.dagster.add_partition(job_name, TENANT_STUDY, key)
                tags["dagster/partition"] = key
            run_id = self.dagster.submit(job_name, {**run_config, "loggers": {TRACE_LOGGER: {}}}, tags, job_id)
        except (DagsterUnavailable, DagsterRejected) as exc:
            raise dagster_problem(exc) from None
        t = now()
        row = {"id": job_id, "tenant": tenant, "study": study, "kind": kind, "status": "queued", "run_id": run_id,
               "trace_id": trace_id_var.get() or None, "request": request, "result": None, "created_at": t,
               "updated_at": t}
        with self.engine.begin() as conn:
            if conn.execute(select(J.c.id).where(J.c.id == job_id)).first() is None:
                conn.execute(insert(J).values(**row))
        return self.describe(self._row(tenant, job_id))

    # -- reading ---------------------------------------------------------------------------------
    def _row(self, tenant: str, job_id: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(J).where(J.c.id == job_id, J.c.tenant == tenant)).first()
        if row is None:
            raise not_found("job", job_id)
        return dict(row._mapping)

    def get(self, tenant: str, job_id: str) -> dict:
        """The tenant's job ``job_id`` with its current status (404 for any other tenant's)."""
        return self.describe(self._refresh([self._row(tenant, job_id)])[0])

    def list(self, tenant: str, status: str | None = None, limit: int = 50) -> list[dict]:
        """The tenant's jobs, newest first, optionally only those with ``status`` (after refreshing)."""
        with self.engine.connect() as conn:
            query = select(J).where(J.c.tenant == tenant).order_by(J.c.created_at.desc()).limit(1000)
            rows = [dict(r._mapping) for r in conn.execute(query)]
        rows = self._refresh(rows)
        return [self.describe(r) for r in rows if status in (None, r["status"])][:limit]

    def _refresh(self, rows: list[dict]) -> list[dict]:
        open_rows = {r["run_id"]: r for r in rows if r["status"] not in FINISHED and r["run_id"]}
        if not open_rows:
            return rows
        try:
            runs = {run.run_id: run for run in self.dagster.runs(run_ids=list(open_rows))}
            for run_id, row in open_rows.items():
                run = runs.get(run_id)
                if run is None:
                    continue
                status = job_status(run.status)
                result = None
                if status in FINISHED:
                    detail = self.dagster.run(run_id) or run
                    result = self._result(row, detail)
                if status != row["status"] or result is not None:
                    self._save(row, status, result)
        except (DagsterUnavailable, DagsterRejected) as exc:
            raise dagster_problem(exc) from None
        return rows

    def _save(self, row: dict, status: str, result: dict | None) -> None:
        t = now()
        with self.engine.begin() as conn:
            conn.execute(update(J).where(J.c.id == row["id"]).values(status=status, result=result, updated_at=t))
        row.update(status=status, result=result, updated_at=t)

    def describe(self, row: dict) -> dict[str, Any]:
        links = {"self": f"/jobs/{row['id']}"}
        result = row["result"]
        if result:
            links |= result.get("links", {})
        return {"job_id": row["id"], "kind": row["kind"], "status": row["status"], "study": row["study"],
                "dagster_run_id": row["run_id"], "trace_id": row["trace_id"],
                "created_at": utc(row["created_at"]).isoformat(), "updated_at": utc(row["updated_at"]).isoformat(),
                "request": row["request"], "result": result, "links": links}

    # -- outputs ---------------------------------------------------------------------------------
    def _lake(self, path: Any) -> str | None:
        """``lake:<relative path>`` for a path under the lake (None for anything else)."""
        if not path:
            return None
        p = Path(str(path))
        try:
            return "lake:" + p.resolve().relative_to(self.settings.lake_dir.resolve()).as_posix()
        except ValueError:
            return None

    def _result(self, row: dict, run: RunInfo) -> dict[str, Any]:
        if run.status != "SUCCESS":
            return {"error": "; ".join(run.failures) or f"the Dagster run ended {run.status}"}
        mats = run.materializations
        kind = row["kind"]
        if kind == "train":
            meta = mats.get("synthesizer_model", {})
            return {"model_id": meta.get("model_id"), "model_status": meta.get("status"),
                    "training": meta.get("training"), "privacy": meta.get("privacy"),
                    "links": {"model": f"/synth/v1/models/{meta.get('model_id')}"}}
        if kind == "generate":
            cohort, pack = mats.get("synthetic_cohort", {}), mats.get("evidence_pack", {})
            result = {"batch_id": run.run_id, "model_id": cohort.get("model_id"), "model_status": cohort.get("model_status"),
                      "rows": cohort.get("rows"), "conditions": cohort.get("conditions"),
                      "cohort": self._lake(cohort.get("path")), "evidence_overall": pack.get("overall"),
                      "links": {}}
            if pack:
                result["links"] = {"evidence": f"/evidence/v1/runs/{run.run_id}",
                                   "report": f"/evidence/v1/runs/{run.run_id}?format=html"}
            return result
        if kind == "impute":
            profile, imputed = mats.get("missingness_profile", {}), mats.get("imputed_dataset", {})
            bench = mats.get("imputation_benchmark", {})
            return {"missingness": {"little_min_p_value": profile.get("little_min_p_value"),
                                    "pct_missing_scheduled": profile.get("pct_missing_scheduled"),
                                    "profile": self._lake(profile.get("profile")),
                                    "little_mcar": profile.get("little_mcar")},
                    "imputer": imputed.get("imputer"), "why": bench.get("why"), "model_id": imputed.get("model_id"),
                    "cells_imputed": imputed.get("cells_imputed"), "imputed_dataset": self._lake(imputed.get("path")),
                    "lineage": self._lineage(row["tenant"], row["study"], run.run_id)}
        report = next(iter(run.outputs.values()), {}).get("report")
        return {"power": report}

    def _lineage(self, tenant: str, study: str, run_id: str) -> dict[str, Any]:
        """The run's lineage manifests and the raw-zone input of the study's bronze tables."""
        from trialsynth.lineage import open_store

        records = open_store(self.settings).read(tenant, study)
        mine = [r for r in records if r["run_id"] == run_id]
        raw = [r for r in records if r["asset_key"] == "raw_drop"]
        raw_input = None
        if raw:
            raw_input = {"run_id": raw[-1]["run_id"], "sequence": raw[-1]["sequence"],
                         "outputs": [o.get("name") or o.get("uri") for o in raw[-1]["outputs"]]}
        return {"verify": f"trialsynth verify-lineage --tenant {tenant} --study {study}",
                "manifests": [{"asset_key": r["asset_key"], "sequence": r["sequence"], "hash": r["hash"]} for r in mine],
                "raw_input": raw_input}

