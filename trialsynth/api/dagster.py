"""The API's calls to the deployment's Dagster webserver, over its GraphQL HTTP API.

Every call has a timeout (``api.dagster_timeout_s``), is retried a bounded number of times with a
short backoff when Dagster cannot be reached (connection refused, timeout, HTTP 5xx), and goes through
a small circuit breaker: after ``failures`` unreachable calls in a row, calls fail at once for
``cooldown_s`` (then one trial call decides). Unreachable -> :class:`DagsterUnavailable` (the routes
answer 503 with Retry-After); a refusal by Dagster (bad run config, unknown job) ->
:class:`DagsterRejected`.

Launching is safe to retry: every run carries the tag ``trialsynth/api_job`` = the job id, and before
it launches, :meth:`DagsterClient.submit` looks for a run with that tag (a launch whose answer was
lost), and returns it instead of launching a second run.

Requests go through ``requests`` rather than :class:`dagster_graphql.DagsterGraphQLClient`, which folds
connection errors and refusals into one exception type and has no retry; the launch mutation is that
client's own (``CLIENT_SUBMIT_PIPELINE_RUN_MUTATION``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from dagster_graphql.client.client_queries import (
    CLIENT_GET_REPO_LOCATIONS_NAMES_AND_PIPELINES_QUERY,
    CLIENT_SUBMIT_PIPELINE_RUN_MUTATION,
)

API_JOB_TAG = "trialsynth/api_job"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


class DagsterUnavailable(Exception):
    """Dagster could not be reached (or the breaker is open); retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DagsterRejected(Exception):
    """Dagster answered, and refused the request (config, unknown job or partition, Python error)."""


class CircuitBreaker:
    """Closed -> open after ``failures`` consecutive failures -> half-open after ``cooldown_s``."""

    def __init__(self, failures: int = 3, cooldown_s: float = 15.0, clock: Callable[[], float] = time.monotonic):
        self.failures, self.cooldown_s, self.clock = failures, cooldown_s, clock
        self._count, self._opened_at, self._lock = 0, None, threading.Lock()

    def before(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            remaining = self._opened_at + self.cooldown_s - self.clock()
            if remaining > 0:
                raise DagsterUnavailable(f"Dagster was unreachable {self._count} times in a row; "
                                         "not calling it for a while", retry_after=max(1, round(remaining)))
            self._opened_at = self.clock()  # half-open: this caller tries, the others wait another cooldown

    def success(self) -> None:
        with self._lock:
            self._count, self._opened_at = 0, None

    def failure(self) -> None:
        with self._lock:
            self._count += 1
            if self._count >= self.failures:
                self._opened_at = self.clock()

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None


@dataclass
class RunInfo:
    """What the API needs to know about one Dagster run."""

    run_id: str
    status: str  # Dagster's: QUEUED, STARTED, SUCCESS, FAILURE, CANCELED, ...
    tags: dict[str, str] = field(default_factory=dict)
    materializations: dict[str, dict[str, Any]] = field(default_factory=dict)  # "a/b" -> metadata
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # step key -> output metadata
    failures: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


RUNS_QUERY = """query ApiRuns($filter: RunsFilter!) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId status tags { key value } } } ... on PythonError { message } } }"""
RUN_DETAIL_QUERY = """query ApiRun($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { runId status tags { key value }
    assetMaterializations { assetKey { path } metadataEntries { ...Meta } }
    eventConnection(limit: 2000) { events { __typename
      ... on ExecutionStepOutputEvent { stepKey metadataEntries { ...Meta } }
      ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } }
      ... on RunFailureEvent { message } } } }
  ... on RunNotFoundError { message } ... on PythonError { message } } }
fragment Meta on MetadataEntry { label __typename
  ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue intRepr }
  ... on FloatMetadataEntry { floatValue } ... on BoolMetadataEntry { boolValue }
  ... on PathMetadataEntry { path } ... on UrlMetadataEntry { url } ... on JsonMetadataEntry { jsonString }
  ... on MarkdownMetadataEntry { mdStr } }"""
ADD_PARTITION_MUTATION = """mutation ApiAddPartition($repositorySelector: RepositorySelector!,
  $partitionsDefName: String!, $partitionKey: String!) {
  addDynamicPartition(repositorySelector: $repositorySelector, partitionsDefName: $partitionsDefName,
    partitionKey: $partitionKey) { __typename ... on PythonError { message } ... on UnauthorizedError { message } } }"""
VERSION_QUERY = "query ApiPing { version }"


def _entry_value(entry: dict) -> Any:
    kind = entry["__typename"]
    if kind == "JsonMetadataEntry":
        return json.loads(entry["jsonString"])
    if kind == "IntMetadataEntry":
        return entry["intValue"] if entry.get("intValue") is not None else int(entry["intRepr"])
    for key in ("text", "floatValue", "boolValue", "path", "url", "mdStr"):
        if key in entry:
            return entry[key]
    return None


def _metadata(entries: list[dict]) -> dict[str, Any]:
    return {e["label"]: _entry_value(e) for e in entries}


def _json_or_none(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class DagsterClient:
    """GraphQL calls to ``url`` with timeouts, bounded retries and a circuit breaker (module doc)."""

    def __init__(self, url: str, timeout_s: float = 5.0, retries: int = 2, backoff_s: float = 0.2,
                 breaker: CircuitBreaker | None = None) -> None:
        self.url, self.timeout_s, self.retries, self.backoff_s = url, timeout_s, retries, backoff_s
        self.breaker = breaker or CircuitBreaker()
        self._session = requests.Session()
        self._repository: dict[str, str] | None = None

    # -- transport -------------------------------------------------------------------------------
    def _post(self, query: str, variables: dict | None = None, retries: int | None = None) -> dict:
        self.breaker.before()
        last: Exception | None = None
        for attempt in range((self.retries if retries is None else retries) + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._session.post(self.url, json={"query": query, "variables": variables or {}},
                                              timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = exc
                continue
            body = _json_or_none(response)
            if response.status_code >= 500 and not (body and body.get("data")):
                last = RuntimeError(f"HTTP {response.status_code}")
                continue
            self.breaker.success()  # Dagster answered (a PythonError comes back as a 500 with data)
            if body is None or (response.status_code != 200 and not body.get("data")):
                raise DagsterRejected(f"Dagster GraphQL answered HTTP {response.status_code}: {response.text[:300]}")
            if body.get("errors"):
                raise DagsterRejected("; ".join(e.get("message", "") for e in body["errors"]))
            return body["data"]
        self.breaker.failure()
        raise DagsterUnavailable(f"Dagster at {self.url} is unreachable: {last}")

    # -- calls -----------------------------------------------------------------------------------
    def ping(self) -> str:
        """Dagster's version; raises DagsterUnavailable when it cannot be reached."""
        return self._post(VERSION_QUERY, retries=0)["version"]

    def repository(self, job_name: str) -> dict[str, str]:
        """``{repositoryLocationName, repositoryName}`` of the code location holding ``job_name`` (cached)."""
        if self._repository is None:
            data = self._post(CLIENT_GET_REPO_LOCATIONS_NAMES_AND_PIPELINES_QUERY)["repositoriesOrError"]
            if data["__typename"] != "RepositoryConnection":
                raise DagsterRejected(f"Dagster could not list its code locations: {data.get('message')}")
            found = [n for n in data["nodes"] if any(p["name"] == job_name for p in n["pipelines"])]
            if not found:
                raise DagsterRejected(f"no Dagster code location has the job {job_name!r}")
            self._repository = {"repositoryLocationName": found[0]["location"]["name"],
                                "repositoryName": found[0]["name"]}
        return self._repository

    def add_partition(self, job_name: str, partitions_def: str, key: str) -> None:
        """Register ``key`` in the dynamic partitions ``partitions_def`` (no-op when it exists)."""
        result = self._post(ADD_PARTITION_MUTATION, {"repositorySelector": self.repository(job_name),
                                                      "partitionsDefName": partitions_def, "partitionKey": key})
        outcome = result["addDynamicPartition"]
        if outcome["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise DagsterRejected(f"adding partition {key!r}: {outcome.get('message', outcome['__typename'])}")

    def runs(self, *, run_ids: list[str] | None = None, tags: dict[str, str] | None = None) -> list[RunInfo]:
        """Runs by id or by tags (status and tags only)."""
        run_filter: dict[str, Any] = {}
        if run_ids is not None:
            run_filter["runIds"] = run_ids
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        data = self._post(RUNS_QUERY, {"filter": run_filter})["runsOrError"]
        if data["__typename"] != "Runs":
            raise DagsterRejected(f"listing runs: {data.get('message')}")
        return [RunInfo(r["runId"], r["status"], {t["key"]: t["value"] for t in r["tags"]}) for r in data["results"]]

    def run(self, run_id: str) -> RunInfo | None:
        """One run with its materializations, op outputs and failure messages (None if unknown)."""
        data = self._post(RUN_DETAIL_QUERY, {"runId": run_id})["runOrError"]
        if data["__typename"] == "RunNotFoundError":
            return None
        if data["__typename"] != "Run":
            raise DagsterRejected(f"reading run {run_id}: {data.get('message')}")
        info = RunInfo(data["runId"], data["status"], {t["key"]: t["value"] for t in data["tags"]})
        for mat in data["assetMaterializations"]:
            info.materializations["/".join(mat["assetKey"]["path"])] = _metadata(mat["metadataEntries"])
        for ev in data["eventConnection"]["events"]:
            if ev["__typename"] == "ExecutionStepOutputEvent":
                info.outputs[ev["stepKey"]] = _metadata(ev["metadataEntries"])
            elif ev["__typename"] == "ExecutionStepFailureEvent":
                error = ev["error"]
                while error.get("cause"):
                    error = error["cause"]
                info.failures.append(f"step {ev['stepKey']} failed: {error['message'].strip()}")
            elif ev["__typename"] == "RunFailureEvent" and not info.failures:
                info.failures.append(ev["message"])
        return info

    def submit(self, job_name: str, run_config: dict, tags: dict[str, str], api_job: str) -> str:
        """Launch ``job_name`` (queued by Dagster's run coordinator) unless a run of ``api_job`` exists;
        returns the run id."""
        params = {"selector": {**self.repository(job_name), "pipelineName": job_name},
                  "runConfigData": run_config, "mode": "default",
                  "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in {**tags, API_JOB_TAG: api_job}.items()]}}
        for attempt in range(self.retries + 1):
            existing = self.runs(tags={API_JOB_TAG: api_job})  # a launch whose answer was lost
            if existing:
                return existing[0].run_id
            try:  # the launch itself is never resent blindly: the loop looks for its run first
                result = self._post(CLIENT_SUBMIT_PIPELINE_RUN_MUTATION, {"executionParams": params}, retries=0)
                break
            except DagsterUnavailable:
                if attempt == self.retries:
                    raise
                time.sleep(self.backoff_s * 2 ** attempt)
        outcome = result["launchPipelineExecution"]
        if outcome["__typename"] in ("LaunchRunSuccess", "LaunchPipelineRunSuccess"):
            return outcome["run"]["runId"]
        errors = "; ".join(e["message"] for e in outcome.get("errors", [])) or outcome.get("message") or ""
        raise DagsterRejected(f"Dagster refused to launch {job_name}: {outcome['__typename']} {errors}".strip())
