"""dbt data tests are scoped to the tenant/study partition being built (issue 9, item 4).

One warehouse holds two partitions: ``acme/ACME-001`` (clean) and ``pilot/PILOT-01``, whose bronze
AE has rows of subjects missing from DM (orphans) and one AE key sent twice. The bronze Parquet is
written directly, as the ingest would never let these rows through. Building acme passes before and
after the pilot build fails; the pilot failure names tenant, study, model, test and the offending
USUBJIDs, in dbt's results and in the Dagster run (``dagster.Failure`` description and metadata, and
the innermost error that ``trialsynth/runner.py`` prints in the CLI summary).
"""

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from dbt.cli.main import dbtRunnerResult

from tests.test_dbt_project import (
    ACME,
    PILOT,
    acme_rows,
    assert_success,
    pilot_rows,
    query,
    run_dbt,
    write_bronze,
)

ORPHANS = ("A-001", "P-900", "P-901")  # AE subjects not in the pilot's DM; A-001 is in acme's DM
DUPLICATED = "P-1"  # AESEQ 1 of this subject is sent twice


def partition_vars(partition: tuple[str, str]) -> str:
    return json.dumps({"tenant": partition[0], "study": partition[1]})


def broken_pilot_rows() -> dict[str, list[dict[str, Any]]]:
    rows = pilot_rows()
    ae = rows["ae"][0]
    assert ae["USUBJID"] == DUPLICATED and ae["AESEQ"] == 1.0
    rows["ae"] += [{**ae, "USUBJID": subject} for subject in ORPHANS]
    rows["ae"].append({**ae, "AETERM": "rash, sent again"})
    return rows


def write_lake(lake: Path) -> None:
    write_bronze(lake, *ACME, acme_rows())
    write_bronze(lake, *PILOT, broken_pilot_rows(), extras=("DMDTC",))


def failed_tests(result: dbtRunnerResult) -> dict[tuple[str, str], Any]:
    """(model, generic test name) -> dbt result of every test that failed or errored."""
    return {(r.node.attached_node.split(".")[-1], r.node.test_metadata.name): r for r in result.result
            if r.node.resource_type == "test" and str(r.status) in ("fail", "error")}


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, dbtRunnerResult]]]:
    """acme built, then pilot, then acme again, per partition as the orchestrator runs dbt."""
    root = tmp_path_factory.mktemp("scoping")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_LAKE_DIR", str(root / "lake"))
        mp.setenv("TRIALSYNTH_WAREHOUSE_PATH", str(root / "warehouse.duckdb"))
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        write_lake(root / "lake")
        results = {}
        for step, partition in (("acme", ACME), ("pilot", PILOT), ("acme_again", ACME)):
            results[step] = run_dbt(["build", "--vars", partition_vars(partition)], root / f"target_{step}")
        yield root, results


def test_a_study_passes_beside_another_studys_bad_rows(builds: tuple[Path, dict[str, dbtRunnerResult]]) -> None:
    root, results = builds
    # The pilot's orphans sit in fact_ae (its build inserted them before its tests failed), yet
    # acme's tests, run again after that, do not see them.
    orphans = query(root / "warehouse.duckdb",
                    f"select count(*) from fact_ae where tenant_id = 'pilot' and usubjid in {ORPHANS}")
    assert orphans == [(len(ORPHANS),)]
    for step in ("acme", "acme_again"):
        assert_success(results[step])
        assert sum(r.node.resource_type == "test" for r in results[step].result) > 80


def test_the_bad_study_fails_on_its_own_rows(builds: tuple[Path, dict[str, dbtRunnerResult]]) -> None:
    _, results = builds
    result = results["pilot"]
    assert not result.success
    failed = failed_tests(result)
    assert {("fact_ae", "relationships_multi"), ("fact_ae", "unique_combination_of_columns")} <= set(failed)
    assert failed["fact_ae", "relationships_multi"].failures == len(ORPHANS)
    assert failed["fact_ae", "unique_combination_of_columns"].failures == 1
    # models built on fact_ae are skipped, acme's rows there untouched
    skipped = {r.node.name for r in result.result if str(r.status) == "skipped"}
    assert "mart_safety" in skipped


def test_without_vars_tests_check_every_partition(builds: tuple[Path, dict[str, dbtRunnerResult]]) -> None:
    root, _ = builds
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_LAKE_DIR", str(root / "lake"))
        mp.setenv("TRIALSYNTH_WAREHOUSE_PATH", str(root / "warehouse.duckdb"))
        result = run_dbt(["test", "--select", "fact_ae"], root / "target_all")
    assert not result.success
    assert failed_tests(result)["fact_ae", "relationships_multi"].failures == len(ORPHANS)


def test_builtin_relationships_find_parents_in_the_same_partition(
        builds: tuple[Path, dict[str, dbtRunnerResult]]) -> None:
    """dbt's own `relationships` (overridden in macros/test_scope.sql): A-001 of the pilot's AE has
    no parent in the pilot's DM, though acme's DM has an A-001."""
    root, _ = builds
    sql = "{{ test_relationships(get_where_subquery(ref('fact_ae')), 'usubjid', ref('dim_subject'), 'usubjid') }}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_LAKE_DIR", str(root / "lake"))
        mp.setenv("TRIALSYNTH_WAREHOUSE_PATH", str(root / "warehouse.duckdb"))
        result = run_dbt(["show", "--inline", sql, "--limit", "20", "--vars", partition_vars(PILOT)], root / "target_show")
    assert_success(result)
    assert sorted(row[0] for row in result.result.results[0].agate_table.rows) == sorted(ORPHANS)


def _assert_every_read_is_scoped(nodes: dict[str, Any], partition: tuple[str, str]) -> int:
    """Every relation a data test reads appears only as `(select * from <it> where <partition>)`."""
    predicate = re.escape(f" where (tenant_id = '{partition[0]}' and study_id = '{partition[1]}')")
    checked = 0
    for node in nodes.values():
        if node["resource_type"] != "test":
            continue
        for parent in node["depends_on"]["nodes"]:
            quoted = rf"[\"`]{re.escape(parent.split('.')[-1])}[\"`]"
            reads = re.findall(quoted, node["compiled_code"])
            scoped = re.findall(rf"\(select \* from \S*{quoted}{predicate}\)", node["compiled_code"])
            assert reads and len(scoped) == len(reads), (node["name"], node["compiled_code"])
            checked += 1
    return checked


def test_every_test_reads_only_the_partition_on_duckdb_and_clickhouse(
        builds: tuple[Path, dict[str, dbtRunnerResult]]) -> None:
    root, _ = builds
    manifest = json.loads((root / "target_pilot" / "manifest.json").read_text())
    run_results = json.loads((root / "target_pilot" / "run_results.json").read_text())
    compiled = {r["unique_id"]: {**manifest["nodes"][r["unique_id"]], "compiled_code": r["compiled_code"]}
                for r in run_results["results"] if r["unique_id"].startswith("test.") and r.get("compiled_code")}
    assert _assert_every_read_is_scoped(compiled, PILOT) > 100
    # ClickHouse: only the tests compile with vars and no server (models ask is_incremental())
    target = root / "target_clickhouse"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRIALSYNTH_LAKE_DIR", str(root / "lake"))
        assert_success(run_dbt(["compile", "--target", "clickhouse", "--no-populate-cache", "--select", "resource_type:test",
                                "--vars", partition_vars(PILOT)], target))
    nodes = json.loads((target / "manifest.json").read_text())["nodes"]
    assert _assert_every_read_is_scoped({k: n for k, n in nodes.items() if n.get("compiled_code")}, PILOT) > 100


def test_dagster_failure_names_partition_model_test_and_keys(settings: Any, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """The dbt step of the Dagster pipeline (its _run_dbt), on the models up to fact_ae and dim_subject."""
    from dagster_dbt import DbtCliResource, dbt_assets

    from assets.warehouse import TrialsynthDbtTranslator, _run_dbt, dbt_project
    from orchestration.partitions import TENANT_STUDY, tenant_study_partitions
    from orchestration.resources import LakeResource, LineageResource

    # _run_dbt exports the settings' paths for profiles.yml; restore them after the test
    monkeypatch.setenv("TRIALSYNTH_LAKE_DIR", str(settings.lake_dir))
    monkeypatch.setenv("TRIALSYNTH_WAREHOUSE_PATH", str(settings.warehouse_path))
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt_target"))  # dagster-dbt's per-run artefacts
    write_lake(settings.lake_dir)

    @dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, select="+fact_ae +dim_subject", name="dbt_fact_ae",
                partitions_def=tenant_study_partitions, dagster_dbt_translator=TrialsynthDbtTranslator())
    def dbt_fact_ae(context: dg.AssetExecutionContext, dbt: DbtCliResource, lineage: LineageResource,
                    lake: LakeResource) -> Iterator[Any]:
        yield from _run_dbt(context, dbt, lineage, lake)

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANT_STUDY, ["|".join(ACME), "|".join(PILOT)])
    resources = {"dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=str(Path(sys.executable).parent / "dbt")),
                 "lineage": LineageResource(lake_dir=str(settings.lake_dir)), "lake": LakeResource()}
    result = dg.materialize([dbt_fact_ae], partition_key="|".join(PILOT), resources=resources, instance=instance,
                            raise_on_error=False)
    assert not result.success
    [event] = result.get_step_failure_events()
    failure = event.step_failure_data.user_failure_data
    error = event.step_failure_data.error
    while error.cause is not None:  # what trialsynth/runner.py prints in the CLI summary
        error = error.cause
    for text in (failure.description, error.message):
        assert "tenant 'pilot', study 'PILOT-01'" in text
        line = next(line for line in text.splitlines() if "test relationships_multi" in line)
        assert "model fact_ae" in line and all(f"usubjid='{s}'" in line for s in ORPHANS), line
        line = next(line for line in text.splitlines() if "test unique_combination_of_columns" in line)
        assert "model fact_ae" in line and f"usubjid='{DUPLICATED}'" in line and "n_rows=2" in line, line
    records = {(r["model"], r["test"]): r for r in failure.metadata["failed_dbt_nodes"].value}
    orphan_rows = records["fact_ae", "relationships_multi"]["first_failing_rows"]
    assert sorted(r["usubjid"] for r in orphan_rows) == sorted(ORPHANS)
    assert failure.metadata["tenant"].value == "pilot" and failure.metadata["study"].value == "PILOT-01"
    # reading the failing rows left no handle on the warehouse: the next build can write
    duckdb.connect(str(settings.warehouse_path)).close()
