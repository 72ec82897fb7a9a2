"""dbt star schema and marts as Dagster assets (dagster-dbt), per tenant/study partition.

The partition is passed to dbt as ``--vars '{"tenant": ..., "study": ...}'`` so incremental models
rebuild only that study's rows. dbt sources ``bronze.<domain>`` map to the ``bronze/<domain>`` assets.
Runs share one pool (``duckdb_warehouse``) because DuckDB allows a single writer.
"""


import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource, DbtProject, dbt_assets

from orchestration.partitions import study_check, tenant_study_partitions
from orchestration.resources import LakeResource, LineageResource
from trialsynth.lineage import warehouse_dataset
from trialsynth.lineage.rows import partition_hasher
from trialsynth.names import split_partition_key
from trialsynth.settings import get_settings
from trialsynth.storage import open_lake_store
from trialsynth.version import code_version


def dbt_environment() -> dict[str, str]:
    """Env vars ``dbt_project/profiles.yml`` reads, from the settings object. The lake is the folder on
    the local store, the bucket's URL on S3 (ClickHouse reads it with ``s3()``, macros/bronze.sql)."""
    s = get_settings()
    wh = s.warehouse
    return {
        "TRIALSYNTH_LAKE_DIR": open_lake_store(s).location,
        "TRIALSYNTH_WAREHOUSE_PATH": str(s.warehouse_path),
        # Names unlike the settings' own TRIALSYNTH_WAREHOUSE__* overrides, so exporting them never
        # overrides a later settings object. The password stays in the env var the settings name.
        "TRIALSYNTH_DBT_CLICKHOUSE_HOST": wh.clickhouse_host,
        "TRIALSYNTH_DBT_CLICKHOUSE_PORT": str(wh.clickhouse_port),
        "TRIALSYNTH_DBT_CLICKHOUSE_USER": wh.clickhouse_user,
        "TRIALSYNTH_DBT_CLICKHOUSE_DATABASE": wh.clickhouse_database,
        "TRIALSYNTH_DBT_CLICKHOUSE_PASSWORD_ENV": wh.clickhouse_password_env,
        "TRIALSYNTH_DBT_CLICKHOUSE_SECURE": str(wh.clickhouse_secure),
    }


MANIFEST_DIRS = ("target", "parsed")  # where `make dbt-manifest` / a re-parse write it; where the image ships it
# (infra/docker/Dockerfile: outside dbt's target folder, which Kubernetes mounts as a writable volume)


def _dbt_sources(project_dir: Path) -> list[Path]:
    """The files a parsed manifest is made from."""
    found = [p for d in ("models", "macros", "tests") for p in (project_dir / d).rglob("*") if p.is_file()]
    return [*found, project_dir / "dbt_project.yml"]


def manifest_staleness(manifest: Path, project_dir: Path) -> str | None:
    """Why ``manifest`` cannot be used for ``project_dir``: missing, or older than a model, macro or
    test file (named); None when it is fresh."""
    if not manifest.exists():
        return f"{manifest} is missing"
    built = manifest.stat().st_mtime
    newer = [p for p in _dbt_sources(project_dir) if p.stat().st_mtime > built]
    if newer:
        shown = ", ".join(str(p.relative_to(project_dir)) for p in newer[:3])
        return f"{manifest} is older than {len(newer)} dbt file(s) ({shown}{', ...' if len(newer) > 3 else ''})"
    return None


def parse_dbt_project(project_dir: Path, target: str) -> Path:
    """``dbt parse`` into ``<project_dir>/target/manifest.json``, atomically: parsed in a folder of its
    own, then moved in place, so processes loading the definitions at the same time never read half a
    manifest."""
    from dbt.cli.main import dbtRunner

    scratch = Path(tempfile.mkdtemp(prefix="parse-", dir=_mkdir(project_dir / "target")))
    try:
        result = dbtRunner().invoke(["parse", "--project-dir", str(project_dir), "--profiles-dir", str(project_dir),
                                     "--target", target, "--target-path", str(scratch), "--quiet"])
        if not result.success:
            raise RuntimeError(f"dbt parse failed for {project_dir}: {result.exception}")
        manifest = project_dir / "target" / "manifest.json"
        os.replace(scratch / "manifest.json", manifest)
        return manifest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepare_dbt_project() -> DbtProject:
    """The dbt project with a fresh parsed manifest: the one ``make dbt-manifest`` (or the image build)
    wrote when no model, macro or test file is newer; else ``dbt parse`` runs now, saying why (it
    costs seconds of every definitions load until the manifest is written again)."""
    os.environ.update(dbt_environment())
    s = get_settings()
    s.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    project_dir = s.dbt_project_path

    def project(target_path: str) -> DbtProject:
        return DbtProject(project_dir=project_dir, profiles_dir=project_dir, target=s.warehouse.target,
                          target_path=target_path)

    reasons = []
    for target_path in MANIFEST_DIRS:
        candidate = project(target_path)
        reason = manifest_staleness(candidate.manifest_path, project_dir)
        if reason is None:
            return candidate
        reasons.append(reason)
    logging.getLogger(__name__).warning(
        "dbt manifest not usable (%s): running dbt parse now; `make dbt-manifest` (or `dbt parse` in %s) "
        "writes it once", "; ".join(reasons), project_dir)
    parse_dbt_project(project_dir, s.warehouse.target)
    return project(MANIFEST_DIRS[0])


dbt_project = prepare_dbt_project()


class TrialsynthDbtTranslator(DagsterDbtTranslator):
    """Group ``dbt``; sources keyed as the bronze/analytics assets that write them; every model
    refreshed by declarative automation when an upstream asset of its partition changes (a backfill,
    a re-materialized analytics asset); dbt tests as asset checks of their partition."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "dbt"

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        declared = (dbt_resource_props.get("meta") or {}).get("dagster", {}).get("asset_key")
        if dbt_resource_props["resource_type"] == "source" and not declared:
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        # eager: the partition whose parents were updated (and none is missing or still running)
        return dg.AutomationCondition.eager() if dbt_resource_props["resource_type"] != "source" else None

    def get_asset_check_spec(self, asset_spec: dg.AssetSpec, manifest: Mapping[str, Any], unique_id: str,
                             project: DbtProject | None) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        return None if spec is None else study_check(
            spec.name, asset=spec.asset_key, description=spec.description, additional_deps=spec.additional_deps,
            blocking=spec.blocking, metadata=spec.metadata, automation_condition=spec.automation_condition)


PARSE_STATE = "partial_parse"  # under dbt's target folder: dbt's partial-parse state per partition


def _parse_state(project_dir: Path, target: str, dbt_vars: str) -> Path:
    """Where dbt's partial-parse state of a partition's builds is kept between its steps and runs.

    Every step builds in a target folder of its own (as dagster-dbt does), where dbt finds no state and
    parses the whole project again: about 2 s of CPU on every one of a run's seven dbt steps. dbt
    checks the state it is given (vars, profile, project files, version) and parses in full whenever it
    no longer fits, so sharing it between steps is safe. One file per target, vars and profile
    environment (:func:`dbt_environment`): a state saved with other ones would always be parsed again."""
    profile = json.dumps(dbt_environment(), sort_keys=True)
    key = hashlib.sha256(f"{target}\0{dbt_vars}\0{profile}".encode()).hexdigest()[:16]
    return project_dir / "target" / PARSE_STATE / f"{key}.msgpack"


LAKE_HEADERS_ENV = "TRIALSYNTH_DBT_LAKE_S3_HEADERS"  # JSON {header: value} that macros/bronze.sql sends with s3()


REDACTED = b"<redacted: tenant SSE-C key>"
TEXT_ARTEFACTS = (".sql", ".json", ".log", ".txt")


@contextmanager
def lake_headers(headers: Mapping[str, str], step_target: Path) -> Iterator[None]:
    """``headers`` (the partition tenant's SSE-C key) in the environment dbt reads, for one step only.
    They become part of the SQL dbt compiles, so afterwards every artefact of the step (``step_target``:
    compiled and run SQL, manifest, run results, dbt.log) that holds them has them replaced by
    :data:`REDACTED` (other files holding them are removed)."""
    if not headers:
        yield
        return
    os.environ[LAKE_HEADERS_ENV] = json.dumps(dict(headers))
    try:
        yield
    finally:
        os.environ.pop(LAKE_HEADERS_ENV, None)
        secrets = [v.encode() for v in headers.values() if len(v) > 8]  # the key and its MD5, not "AES256"
        for path in (p for p in step_target.rglob("*") if p.is_file()):
            data = path.read_bytes()
            if not any(secret in data for secret in secrets):
                continue
            if path.suffix not in TEXT_ARTEFACTS:
                path.unlink()
                continue
            for secret in secrets:
                data = data.replace(secret, REDACTED)
            path.write_bytes(data)


def _run_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, lineage: LineageResource,
             lake: LakeResource) -> Iterator[Any]:
    tenant, study = split_partition_key(context.partition_key)
    os.environ.update(dbt_environment())  # profiles.yml reads the lake and warehouse paths from here
    get_settings().warehouse_path.parent.mkdir(parents=True, exist_ok=True)  # DuckDB creates the file, not its folder
    dbt_vars = json.dumps({"tenant": tenant, "study": study})
    project_dir = Path(dbt.project_dir)
    step_target = Path("target") / f"{context.op_execution_context.op.name}-{context.run.run_id[:7]}-{uuid.uuid4().hex[:7]}"
    state = _parse_state(project_dir, get_settings().warehouse.target, dbt_vars)
    if state.exists():
        shutil.copyfile(state, _mkdir(project_dir / step_target) / "partial_parse.msgpack")
    # "buildable": a test spanning two steps' models (e.g. a relationship to dim_site) runs with the
    # later step, once both of its parents exist.
    with lake_headers(lake.reader_headers(context.partition_key), project_dir / step_target):
        invocation = dbt.cli(["build", "--indirect-selection", "buildable", "--vars", dbt_vars],
                             context=context, raise_on_error=False, target_path=step_target)
        yield from invocation.stream()
    saved = project_dir / step_target / "partial_parse.msgpack"
    if saved.exists():  # the state this build parsed, for the next step (written whole, then moved in place)
        scratch = _mkdir(state.parent) / f".{state.name}.{uuid.uuid4().hex}"
        shutil.copyfile(saved, scratch)
        os.replace(scratch, state)
    if not invocation.is_successful():
        raise _build_failure(invocation, tenant, study) from None  # the report is the innermost error
    _record_lineage(context, lineage, invocation, tenant, study)


FAILING_ROWS_SHOWN = 5  # offending rows quoted per failed dbt test
PARTITION_COLUMNS = ("tenant_id", "study_id")  # the same in every row of a partition's test: not quoted


def _build_failure(invocation: DbtCliInvocation, tenant: str, study: str) -> Exception:
    """A :class:`dagster.Failure` naming every failed dbt test and model of the partition's build
    (see :func:`describe_dbt_failures`); dbt's own error when its run results say nothing."""
    error = invocation.get_error()
    try:
        results = invocation.get_artifact("run_results.json")["results"]
    except FileNotFoundError:  # dbt stopped before running anything (e.g. a compilation error)
        return error or RuntimeError(f"dbt failed: {invocation.dbt_command}")
    fetch_rows = partial(failing_rows, invocation.adapter) if invocation.adapter is not None else None
    description, failed = describe_dbt_failures(tenant, study, results, invocation.manifest["nodes"], fetch_rows)
    if not failed:
        return error or RuntimeError(f"dbt failed: {invocation.dbt_command}")
    return dg.Failure(description=description, metadata={
        "tenant": tenant,
        "study": study,
        "failed_dbt_nodes": dg.MetadataValue.json(failed),
        "skipped_dbt_models": dg.MetadataValue.json(sorted(
            r["unique_id"].split(".")[-1] for r in results if r["status"] == "skipped" and r["unique_id"].startswith("model."))),
        # dbt's own message: the command, the dbt log path and the failing nodes (without colours)
        "dbt_error": re.sub(r"\x1b\[[0-9;]*m", "", str(error.description if isinstance(error, dg.Failure) else error)),
    })


def failing_rows(adapter: Any, sql: str, limit: int = FAILING_ROWS_SHOWN) -> list[dict[str, Any]]:
    """The first ``limit`` rows of a failed test's compiled SQL, run through the build's own dbt
    adapter (DuckDB or ClickHouse alike; dagster-dbt opens it read-only on DuckDB)."""
    if getattr(adapter.config.credentials, "keep_open", False):
        # dbt-duckdb keeps the database file open in this process by default (profile keep_open):
        # close it after the query, or the read-only handle blocks the next build's writer.
        adapter.config.credentials.keep_open = False
    with adapter.connection_named("trialsynth_test_failures"):
        _, table = adapter.execute(f"select * from (\n{sql}\n) as failing_rows limit {int(limit)}", fetch=True)
    return [{name: _plain(value) for name, value in zip(table.column_names, row, strict=True)} for row in table.rows]


def _plain(value: Any) -> Any:
    """A JSON-safe scalar: integral numbers as int, other numbers as float, dates etc. as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal | float):
        return int(value) if value == int(value) else float(value)
    return str(value)


def _row_text(row: Mapping[str, Any], max_columns: int = 8) -> str:
    """``key=value, ...`` of a failing row's first columns (tests like expression_is_true return
    whole rows; the keys come first in every model)."""
    shown = [f"{k}={v!r}" for k, v in list(row.items())[:max_columns]]
    return ", ".join(shown + (["..."] if len(row) > max_columns else []))


def describe_dbt_failures(
    tenant: str,
    study: str,
    results: list[Mapping[str, Any]],
    nodes: Mapping[str, Mapping[str, Any]],
    fetch_rows: Callable[[str], list[dict[str, Any]]] | None,
) -> tuple[str, list[dict[str, Any]]]:
    """Report of the failed tests and models of one partition's dbt build.

    ``results`` are run_results.json's results, ``nodes`` the manifest's nodes, ``fetch_rows(sql)``
    gives the first failing rows of a test's compiled SQL (None: not queried). Returns the text (one
    line per failure: model, test and its arguments, dbt node, failing row count, first offending
    keys without the partition columns) and one JSON-safe record per failure.
    """
    failed: list[dict[str, Any]] = []
    lines: list[str] = []
    for result in results:
        if result["status"] not in ("fail", "error"):
            continue
        node = nodes.get(result["unique_id"], {})
        name = node.get("name") or result["unique_id"].split(".")[2]  # a test's unique_id ends in a hash
        record: dict[str, Any] = {"node": name, "status": result["status"], "message": result.get("message")}
        kind = result["unique_id"].split(".")[0]
        if kind != "test":
            failed.append({**record, kind: name})
            lines.append(f"- {kind} {name}: {result['status']}: {result.get('message')}")
            continue
        metadata = node.get("test_metadata") or {}
        arguments = {k: v for k, v in (metadata.get("kwargs") or {}).items() if k != "model"}
        record.update(model=(node.get("attached_node") or "?").split(".")[-1], test=metadata.get("name", name),
                      arguments={k: v.replace("{{ ", "").replace(" }}", "") if isinstance(v, str) else v
                                 for k, v in arguments.items()},
                      failures=result.get("failures"), first_failing_rows=[])
        keys = "not queried"
        if fetch_rows is not None and result["status"] == "fail" and result.get("compiled_code"):
            try:
                record["first_failing_rows"] = [{k: v for k, v in row.items() if k not in PARTITION_COLUMNS}
                                                for row in fetch_rows(result["compiled_code"])]
                keys = "; ".join(_row_text(row) for row in record["first_failing_rows"])
            except Exception as exc:  # the report must still name the test when its rows cannot be read
                keys = f"could not be read ({exc})"
        args = ", ".join(f"{k}={v}" for k, v in record["arguments"].items())
        count = f"{record['failures']} failing row(s)" if result["status"] == "fail" else f"error: {record['message']}"
        lines.append(f"- model {record['model']}, test {record['test']}({args}) [dbt node {name}]: {count}; "
                     f"first offending keys: {keys}")
        failed.append(record)
    n_tests = sum("test" in r for r in failed)
    header = (f"dbt build of tenant {tenant!r}, study {study!r} failed: {n_tests} data test(s) and "
              f"{len(failed) - n_tests} other node(s) failed (tests only read this partition's rows)")
    return "\n".join([header, *lines]), failed


def model_groups(manifest: Mapping[str, Any]) -> dict[tuple[str, ...], list[str]]:
    """dbt models grouped by the analytics sources upstream of them (empty tuple = bronze only).

    Each group becomes its own Dagster step, so a failed analytics asset (say, an evidence pack
    that cannot be built) holds back only the marts built from it, never the star schema.
    """
    nodes = manifest["nodes"]
    memo: dict[str, frozenset[str]] = {}

    def analytics_upstream(uid: str) -> frozenset[str]:
        if uid not in memo:
            found: set[str] = set()
            for dep in nodes[uid]["depends_on"]["nodes"]:
                if dep.startswith("source.") and manifest["sources"][dep]["source_name"] == ANALYTICS_SOURCE:
                    found.add(manifest["sources"][dep]["name"])
                elif dep in nodes:
                    found |= analytics_upstream(dep)
            memo[uid] = frozenset(found)
        return memo[uid]

    groups: dict[tuple[str, ...], list[str]] = {}
    for uid, node in nodes.items():
        if node["resource_type"] == "model":
            groups.setdefault(tuple(sorted(analytics_upstream(uid))), []).append(node["name"])
    return groups


def _dbt_step(sources: tuple[str, ...], models: list[str]) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=DBT_MANIFEST,
        project=dbt_project,
        select=" ".join(sorted(models)),
        name="dbt_" + ("_".join(sources) if sources else "star_schema"),
        partitions_def=tenant_study_partitions,
        dagster_dbt_translator=TrialsynthDbtTranslator(),
        pool="duckdb_warehouse",
    )
    def _step(context: dg.AssetExecutionContext, dbt: DbtCliResource, lineage: LineageResource,
              lake: LakeResource) -> Iterator[Any]:
        lake.check_partition_published(context.partition_key)  # dbt reads the files, not through the store
        yield from _run_dbt(context, dbt, lineage, lake)

    return _step


ANALYTICS_SOURCE = "analytics"
DBT_MANIFEST = json.loads(dbt_project.manifest_path.read_text())  # read once for every step
dbt_steps = [_dbt_step(sources, models) for sources, models in sorted(model_groups(DBT_MANIFEST).items())]


def _record_lineage(context: dg.AssetExecutionContext, lineage: LineageResource, invocation: DbtCliInvocation,
                    tenant: str, study: str) -> None:
    """One manifest per model the step built. Its output is the warehouse relation, hashed as the
    partition's rows in canonical order (:mod:`trialsynth.lineage.rows`: the same hash from DuckDB and
    ClickHouse for the same rows), not the SQL that built it, so verification can re-check it later."""
    settings = get_settings()
    nodes = invocation.manifest["nodes"]
    built = [r for r in invocation.get_artifact("run_results.json").get("results", [])
             if r["unique_id"].startswith("model.") and r.get("status") == "success"]
    if not built:
        return
    inputs = _upstream_hashes(lineage, context.partition_key)
    parameters = {"vars": {"tenant": tenant, "study": study}, "target": settings.warehouse.target}
    with partition_hasher(settings) as (namespace, row_sha256):  # DuckDB read-only: dbt has exited, no writer now
        for result in built:
            node = nodes[result["unique_id"]]
            relation = _relation(result, node)
            sha = row_sha256(relation, tenant, study)
            lineage.record(context.partition_key, asset_key=f"dbt/{node['name']}", input_sha256s=inputs,
                           output_sha256=sha, outputs=[warehouse_dataset(namespace, relation, sha)],
                           code_version=code_version(),
                           parameters={**parameters, "materialized": node.get("config", {}).get("materialized")})


def _relation(result: Mapping[str, Any], node: Mapping[str, Any]) -> str:
    """``"schema"."name"`` the run really built (run_results' relation_name: models may go to a
    per-partition schema), without the database part, which is only the warehouse file's name."""
    name = result.get("relation_name") or f'"{node["schema"]}"."{node.get("alias") or node["name"]}"'
    parts = name.split(".")
    return ".".join(parts[-2:])


def _upstream_hashes(lineage: LineageResource, partition_key: str) -> dict[str, str]:
    """Latest output sha256 of every non-dbt asset of the partition (bronze and analytics)."""
    tenant, study = split_partition_key(partition_key)
    latest: dict[str, str] = {}
    for rec in lineage.get_store().read(tenant, study):
        if not rec["asset_key"].startswith("dbt/"):
            latest[rec["asset_key"]] = rec["output_sha256"]
    return latest
