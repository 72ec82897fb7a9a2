"""Lineage manifests: one OpenLineage RunEvent per materialization, hashed, chained and signed.

A manifest is a COMPLETE ``RunEvent`` (openlineage-python): job = the asset key, run = the Dagster
run id, inputs and outputs as datasets named by their lake/warehouse locations, and the custom run
facet ``trialsynth_audit`` (``AuditRunFacet``, :func:`audit_facet_class`) with the sha256 of every input and output, the
code version and git sha, parameters, seed, the chain position (sequence, prev_hash), hash and the
Ed25519 signature.

``hash`` = sha256 of the *canonical bytes*: the whole event as canonical JSON (sorted keys, no
whitespace) without the facet's ``hash`` and ``signature``; ``signature`` = Ed25519 over the same
bytes by the key named in ``key_id`` (which the hashed bytes include). A manifest is stored as the
canonical JSON of the whole event, so any byte changed on disk shows.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import attr

from trialsynth.hashing import canonical_json, sha256_bytes
from trialsynth.lineage.keys import LineageSigner
from trialsynth.settings import PROJECT_ROOT

GENESIS = "0" * 64
FACET = "trialsynth_audit"
PRODUCER = "urn:trialsynth:lineage"
FACET_SCHEMA = "urn:trialsynth:schema:AuditRunFacet:1"  # the fields of AuditRunFacet below
JOB_NAMESPACE = "trialsynth"
GIT_SHA = re.compile(r"^[0-9a-f]{40}$")
RECORD_FIELDS = ("asset_key", "partition", "input_sha256s", "output_sha256", "outputs", "code_version",
                 "parameters", "seed", "time", "run_id")
UNSIGNED = ("hash", "signature")  # facet fields outside the canonical (hashed, signed) bytes


@cache
def audit_facet_class() -> type:
    """The ``AuditRunFacet`` class (openlineage-python is imported when a manifest is built, not when the
    Dagster definitions load)."""
    from openlineage.client.generated.base import RunFacet

    @attr.define
    class AuditRunFacet(RunFacet):
        """trialsynth's audit facet: what an auditor needs to re-check one materialization."""

        tenant: str
        study: str
        asset_key: str
        sequence: int
        prev_hash: str
        input_sha256s: dict[str, str]
        # [{"namespace", "name", "sha256", "kind"}]: kind "bytes" = sha256 of the object's bytes,
        # "rows" = sha256 of the warehouse partition's rows in canonical order, "unlocated" = no location given
        outputs: list[dict[str, str]]
        code_version: str | None
        git_sha: str  # 40 hex, or "unknown: <why>" (never silently absent)
        parameters: dict[str, Any]
        seed: int | None
        dagster_run_id: str | None
        key_id: str
        hash: str = ""
        signature: str = ""

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA

    return AuditRunFacet


@cache
def git_sha() -> str:
    """The checked-out commit (``+dirty`` when tracked files differ), or ``unknown: <reason>``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown: git commit of {PROJECT_ROOT} not found ({type(exc).__name__}: {str(exc)[:120]})"
    return sha + ("+dirty" if dirty else "")


def git_sha_problem(value: str) -> str | None:
    """None when ``value`` names a commit, else what verification should say about it."""
    if GIT_SHA.match(value.removesuffix("+dirty")):
        return None
    return f"code version has no git commit ({value})"


def file_dataset(path: Path | str, sha256: str) -> dict[str, str]:
    """A lake file as an output dataset (OpenLineage naming: namespace ``file``, name = absolute path)."""
    return {"namespace": "file", "name": str(Path(path).resolve()), "sha256": sha256, "kind": "bytes"}


def warehouse_dataset(namespace: str, relation: str, sha256: str | None) -> dict[str, str | None]:
    """A warehouse relation's partition rows as an output dataset: ``namespace`` is
    ``duckdb://<absolute file>`` (re-checked by verification) or ``clickhouse://<host>:<port>``."""
    return {"namespace": namespace, "name": relation, "sha256": sha256, "kind": "rows"}


def canonical_bytes(event: dict[str, Any]) -> bytes:
    """The bytes that are hashed and signed: the event without the facet's hash and signature."""
    facet = event["run"]["facets"][FACET]
    stripped = {**event, "run": {**event["run"], "facets": {
        **event["run"]["facets"], FACET: {k: v for k, v in facet.items() if k not in UNSIGNED}}}}
    return canonical_json(stripped).encode()


def stored_bytes(event: dict[str, Any]) -> bytes:
    return canonical_json(event).encode()


def facet_of(event: dict[str, Any]) -> dict[str, Any]:
    return event["run"]["facets"][FACET]


def build_manifest(tenant: str, study: str, fields: dict[str, Any], sequence: int, prev_hash: str,
                   signer: LineageSigner) -> dict[str, Any]:
    """The signed RunEvent for one materialization at chain position ``sequence``."""
    unknown = set(fields) - set(RECORD_FIELDS)
    if unknown:
        raise ValueError(f"unknown lineage fields: {sorted(unknown)} (allowed: {', '.join(RECORD_FIELDS)})")
    if not fields.get("asset_key"):
        raise ValueError("lineage field asset_key is required")
    if fields.get("partition") not in (None, f"{tenant}|{study}"):
        raise ValueError(f"lineage field partition {fields['partition']!r} is not {tenant}|{study}")
    outputs = list(fields.get("outputs") or [])
    if not outputs and fields.get("output_sha256") is not None:
        outputs = [{"namespace": f"trialsynth://{tenant}/{study}", "name": fields["asset_key"],
                    "sha256": fields["output_sha256"], "kind": "unlocated"}]
    inputs = dict(fields.get("input_sha256s") or {})
    run_id = fields.get("run_id")
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent
    from openlineage.client.serde import Serde

    facet = audit_facet_class()(
        tenant=tenant, study=study, asset_key=fields["asset_key"], sequence=sequence, prev_hash=prev_hash,
        input_sha256s=inputs, outputs=outputs, code_version=fields.get("code_version"), git_sha=git_sha(),
        parameters=dict(fields.get("parameters") or {}), seed=fields.get("seed"), dagster_run_id=run_id,
        key_id=signer.key_id, producer=PRODUCER)
    event = RunEvent(
        eventType="COMPLETE", eventTime=fields.get("time") or datetime.now(UTC).isoformat(), producer=PRODUCER,
        run=Run(runId=run_id or str(uuid.uuid4())),
        job=Job(namespace=JOB_NAMESPACE, name=fields["asset_key"]),
        inputs=[InputDataset(namespace=f"trialsynth://{tenant}/{study}", name=label) for label in sorted(inputs)],
        outputs=[OutputDataset(namespace=o["namespace"], name=o["name"]) for o in outputs],
    )
    doc = Serde.to_dict(event)
    # The facet is added as plain attrs data: Serde drops None values, and a seed or parameter of None
    # must be kept as recorded.
    doc["run"]["facets"] = {FACET: attr.asdict(facet)}
    doc = json.loads(canonical_json(doc))  # hash exactly what a reader will parse
    body = canonical_bytes(doc)
    facet_doc = facet_of(doc)
    facet_doc["hash"] = sha256_bytes(body)
    facet_doc["signature"] = base64.b64encode(signer.sign(body)).decode()
    return doc


def flat_record(event: dict[str, Any]) -> dict[str, Any]:
    """A manifest as the flat record earlier code and tests read (asset_key, parameters, ...), with
    the whole event under ``manifest``."""
    f = facet_of(event)
    outputs = f.get("outputs") or []
    return {
        "sequence": f.get("sequence"), "tenant": f.get("tenant"), "study": f.get("study"),
        "partition": f"{f.get('tenant')}|{f.get('study')}", "asset_key": f.get("asset_key"),
        "input_sha256s": f.get("input_sha256s") or {}, "outputs": outputs,
        "output_sha256": outputs[0].get("sha256") if outputs else None,
        "code_version": f.get("code_version"), "git_sha": f.get("git_sha"), "parameters": f.get("parameters") or {},
        "seed": f.get("seed"), "time": event.get("eventTime"), "run_id": event.get("run", {}).get("runId"),
        "prev_hash": f.get("prev_hash"), "hash": f.get("hash"), "key_id": f.get("key_id"), "manifest": event,
    }
