"""dbt star schema and marts as Dagster assets (dagster-dbt), per tenant/study partition.

The partition is passed to dbt as ``--vars '{"tenant": ..., "study": ...}'`` so incremental models
rebuild only that study's rows. dbt sources ``bronze.<domain>`` map to the ``bronze/<domain>`` assets.
Runs share one pool (``duckdb_warehouse``) because DuckDB allows a single writer.
"""


import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from orchestration.partitions import tenant_study_partitions
from orchestration.resources import LineageResource
from trialsynth.hashing import sha256_bytes
from trialsynth.names import split_partition_key
from trialsynth.settings import get_settings
from trialsynth.version import code_version


def dbt_environment() -> dict[str, str]:
    """Env vars ``dbt_project/profiles.yml`` reads, from the settings object."""
    s = get_settings()
    return {
        "TRIALSYNTH_LAKE_DIR": str(s.lake_dir),
        "TRIALSYNTH_WAREHOUSE_PATH": str(s.warehouse_path),
    }


def _manifest_is_stale(project: DbtProject) -> bool:
    if not project.manifest_path.exists():
        return True
    built = project.manifest_path.stat().st_mtime
    sources = [p for d in ("models", "macros", "tests") for p in (project.project_dir / d).rglob("*") if p.is_file()]
    sources += [project.project_dir / "dbt_project.yml"]
    return any(p.stat().st_mtime > built for p in sources)


def prepare_dbt_project() -> DbtProject:
    """The dbt project, re-parsed when its manifest is missing or older than any model, macro or
    test file (``dbt parse`` takes seconds; a stale manifest would hide new models)."""
    os.environ.update(dbt_environment())
    get_settings().warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    s = get_settings()
    project = DbtProject(project_dir=s.dbt_project_path, profiles_dir=s.dbt_project_path,
                         target=s.warehouse.target)
    if _manifest_is_stale(project):
        from dbt.cli.main import dbtRunner

        result = dbtRunner().invoke(["parse", "--project-dir", str(project.project_dir), "--profiles-dir",
                                     str(project.profiles_dir), "--target", s.warehouse.target, "--quiet"])
        if not result.success:
            raise RuntimeError(f"dbt parse failed for {project.project_dir}: {result.exception}")
    return project


dbt_project = prepare_dbt_project()


class TrialsynthDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "dbt"

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        declared = (dbt_resource_props.get("meta") or {}).get("dagster", {}).get("asset_key")
        if dbt_resource_props["resource_type"] == "source" and not declared:
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)


def _run_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, lineage: LineageResource) -> Iterator[Any]:
    tenant, study = split_partition_key(context.partition_key)
    os.environ.update(dbt_environment())  # profiles.yml reads the lake and warehouse paths from here
    get_settings().warehouse_path.parent.mkdir(parents=True, exist_ok=True)  # DuckDB creates the file, not its folder
    # "buildable": a test spanning two steps' models (e.g. a relationship to dim_site) runs with the
    # later step, once both of its parents exist.
    invocation = dbt.cli(["build", "--indirect-selection", "buildable", "--vars", json.dumps({"tenant": tenant, "study": study})],
                         context=context)
    yield from invocation.stream()
    inputs = _upstream_hashes(lineage, context.partition_key)
    run_results = invocation.get_artifact("run_results.json")
    for result in run_results.get("results", []):
        if not result["unique_id"].startswith("model.") or result.get("status") != "success":
            continue
        compiled = (result.get("compiled_code") or "").encode()
        lineage.record(
            context.partition_key,
            asset_key=f"dbt/{result['unique_id'].split('.')[-1]}",
            input_sha256s=inputs,
            # The warehouse table is not a file: hash the exact SQL that built it plus its row count.
            output_sha256=sha256_bytes(compiled + str(result.get("adapter_response", {}).get("rows_affected")).encode()),
            code_version=code_version(),
            parameters={"vars": {"tenant": tenant, "study": study}, "target": get_settings().warehouse.target},
        )


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
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        select=" ".join(sorted(models)),
        name="dbt_" + ("_".join(sources) if sources else "star_schema"),
        partitions_def=tenant_study_partitions,
        dagster_dbt_translator=TrialsynthDbtTranslator(),
        pool="duckdb_warehouse",
    )
    def _step(context: dg.AssetExecutionContext, dbt: DbtCliResource, lineage: LineageResource) -> Iterator[Any]:
        yield from _run_dbt(context, dbt, lineage)

    return _step


ANALYTICS_SOURCE = "analytics"
dbt_steps = [_dbt_step(sources, models)
             for sources, models in sorted(model_groups(json.loads(dbt_project.manifest_path.read_text())).items())]


def _upstream_hashes(lineage: LineageResource, partition_key: str) -> dict[str, str]:
    """Latest output sha256 of every non-dbt asset of the partition (bronze and analytics)."""
    tenant, study = split_partition_key(partition_key)
    latest: dict[str, str] = {}
    for rec in lineage.get_store().read(tenant, study):
        if not rec["asset_key"].startswith("dbt/"):
            latest[rec["asset_key"]] = rec["output_sha256"]
    return latest
