"""Everything trialsynth deploys on Kubernetes validates offline: every object against the
Kubernetes API schemas (kubernetes-validate), the Dagster chart values against the chart's keys,
the run-queue and run-launcher config against Dagster's own config schema, the production settings
against trialsynth's settings model. ``helm`` is not installable from this project's registries,
so the charts' workloads are built as infra/k8s/render.py explains."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from infra.k8s import render
from trialsynth.settings import PROJECT_ROOT, Settings

K8S_VERSION = "1.33.0"  # the oldest Kubernetes minor these manifests target
README = PROJECT_ROOT / "infra" / "k8s" / "README.md"


@pytest.fixture(scope="module")
def deployable() -> list[dict]:
    return render.all_objects()


@pytest.fixture(scope="module")
def dagster_values() -> dict:
    return render.load_values(render.DAGSTER_VALUES)


def _validation_errors(objects: list[dict]) -> list[str]:
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}")
    return errors


def test_every_object_validates_against_the_kubernetes_schemas(deployable):
    assert len(deployable) >= 25
    errors = _validation_errors(deployable)
    assert not errors, "\n".join(errors)


def test_schema_validation_catches_a_misspelt_field(deployable):
    api = json.loads(json.dumps(next(o for o in deployable if o["kind"] == "Deployment"
                                     and o["metadata"]["name"] == "trialsynth-api")))
    container = api["spec"]["template"]["spec"]["containers"][0]
    container["securityContex"] = container.pop("securityContext")
    (error,) = _validation_errors([api])
    assert error.startswith("Deployment/trialsynth-api: spec.template.spec.containers.0") and "securityContex" in error


def test_the_kustomization_lists_every_manifest_file():
    kustomization = yaml.safe_load((render.MANIFESTS_DIR / "kustomization.yaml").read_text())
    files = {p.name for p in render.MANIFESTS_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert kustomization["namespace"] == render.NAMESPACE


def _key_errors(values: dict) -> list[str]:
    schema = json.loads(render.DAGSTER_KEYS_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(values)]


def test_dagster_values_use_only_the_charts_keys(dagster_values):
    assert not _key_errors(dagster_values)
    broken = json.loads(json.dumps(dagster_values))
    custom = broken["dagsterDaemon"]["runCoordinator"]["config"]["customRunCoordinator"]
    custom["modul"] = custom.pop("module")
    broken["runLauncher"]["config"]["k8sRunLauncher"]["resource"] = {}
    errors = _key_errors(broken)
    assert any("customRunCoordinator" in e and "modul" in e for e in errors), errors
    assert any("k8sRunLauncher" in e and "'resource'" in e for e in errors), errors


def _dagster_config_errors(cls: type, config: dict) -> list[str]:
    from dagster._config import process_config
    from dagster._config.field import resolve_to_config_type

    result = process_config(resolve_to_config_type(cls.config_type()), config)
    return [] if result.success else [e.message for e in result.errors]


def test_instance_config_is_valid_for_dagster_and_dagster_k8s(dagster_values):
    import importlib

    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_k8s import K8sRunLauncher

    instance = render.dagster_instance_config(dagster_values)
    assert not _dagster_config_errors(K8sRunLauncher, instance["run_launcher"]["config"])
    coordinator = instance["run_coordinator"]
    cls = getattr(importlib.import_module(coordinator["module"]), coordinator["class"])
    assert issubclass(cls, QueuedRunCoordinator)  # the daemon dequeues it with the limits below
    assert not _dagster_config_errors(cls, coordinator["config"])
    bad = {**coordinator["config"], "tag_concurrency_limits": [{"key": "dagster/partition", "limit": "one"}]}
    assert _dagster_config_errors(cls, bad)


def test_run_queue_serializes_each_study_and_caps_each_tenant(dagster_values):
    from trialsynth.run_queue import TENANT_TAG

    limits = render.dagster_instance_config(dagster_values)["run_coordinator"]["config"]["tag_concurrency_limits"]
    by_key = {limit["key"]: limit for limit in limits}
    # One run per tenant|study partition (a study id alone is not unique across tenants).
    assert by_key["dagster/partition"] == {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True},
                                           "limit": 1}
    assert by_key[TENANT_TAG]["value"] == {"applyLimitPerUniqueValue": True}
    assert by_key[TENANT_TAG]["limit"] >= 1
    assert set(by_key) == {"dagster/partition", TENANT_TAG}  # tags every partitioned run carries (run_queue.py)


def test_each_run_gets_its_own_pod_with_per_run_resources(dagster_values, deployable):
    job = next(o for o in deployable if o["kind"] == "Job")
    launcher = dagster_values["runLauncher"]["config"]["k8sRunLauncher"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"] == launcher["resources"]
    assert pod["serviceAccountName"] == "trialsynth-dagster-run" and pod["automountServiceAccountToken"] is False
    assert job["spec"]["template"]["metadata"]["labels"]["trialsynth.io/workload"] == "dagster-run"
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "run_worker"
    assert {e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e} == {"trialsynth-env"}
    assert {"name": "DAGSTER_PG_PASSWORD", "valueFrom": {"secretKeyRef": {
        "key": "postgresql-password", "name": dagster_values["global"]["postgresqlSecretName"]}}} in container["env"]


def test_the_lineage_signing_key_reaches_only_run_pods_and_stays_private(deployable):
    mounting = {}
    for obj in deployable:
        template = (obj.get("spec", {}).get("template")
                    or obj.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template"))
        for volume in (template or {}).get("spec", {}).get("volumes", []):
            if volume.get("secret", {}).get("secretName") == "trialsynth-lineage-key":
                mounting[f"{obj['kind']}/{obj['metadata']['name']}"] = (volume, template["spec"])
    assert list(mounting) == ["Job/dagster-run-example"]
    volume, pod = mounting["Job/dagster-run-example"]
    # The signer refuses a key readable by group or others; an fsGroup would add group read.
    assert volume["secret"]["defaultMode"] == 0o400
    assert "fsGroup" not in pod["securityContext"]


def _configmap(deployable: list[dict], name: str) -> dict[str, str]:
    return next(o for o in deployable if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)["data"]


def test_production_settings_load_and_every_store_uses_tls(deployable, dagster_values, tmp_path, monkeypatch):
    config = tmp_path / "trialsynth.yaml"
    config.write_text(_configmap(deployable, "trialsynth-settings")["trialsynth.yaml"])
    env = _configmap(deployable, "trialsynth-env")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TRIALSYNTH_CONFIG", str(config))
    settings = Settings()  # refuses unknown keys: a setting the code does not know fails here
    assert settings.warehouse.target == "clickhouse" and settings.warehouse.clickhouse_port == 8443
    assert settings.lineage.store == "s3" and settings.lineage.s3_endpoint_url.startswith("https://")
    assert "sslmode=verify-full" in settings.registry_url
    assert settings.security.kms != "local", "no keyring file on a read-only root filesystem"
    assert str(settings.lineage.signing_key_path).startswith("/etc/trialsynth/lineage-key/")
    assert settings.lineage.trusted_key_ids, "verification without the key trusts configured ids only"
    assert ":" not in settings.registry_url.split("://", 1)[1].split("@", 1)[0], "no password in the URL"
    assert env["PGSSLMODE"] == "verify-full" and env["AWS_CA_BUNDLE"] == env["PGSSLROOTCERT"]
    assert dagster_values["postgresql"]["postgresqlParams"]["sslmode"] == "require"
    s3_logs = dagster_values["computeLogManager"]["config"]["s3ComputeLogManager"]
    assert s3_logs["endpointUrl"].startswith("https://") and s3_logs["useSsl"] and s3_logs["verify"]


_SECRET_KEY = re.compile(r"(password|passwd|secret_key|secretkey|token|access_key|private_key)$", re.I)


def _literal_secrets(node: object, path: str = "") -> list[str]:
    if isinstance(node, dict):
        found = [f"{path}.{k}" for k, v in node.items() if _SECRET_KEY.search(str(k)) and isinstance(v, str) and v]
        return found + [f for k, v in node.items() for f in _literal_secrets(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [f for i, v in enumerate(node) for f in _literal_secrets(v, f"{path}[{i}]")]
    if isinstance(node, str) and re.search(r"://[^/@\s:]+:[^/@\s]+@", node):
        return [f"{path} (credentials in a URL)"]
    return []


def test_no_secret_value_is_in_any_manifest_or_values_file(deployable):
    assert not [o for o in deployable if o["kind"] == "Secret"], "Secrets are referenced, never committed"
    for source in (deployable, render.load_values(render.DAGSTER_VALUES), render.load_values(render.SUPERSET_VALUES)):
        assert not _literal_secrets(source)
    assert _literal_secrets({"postgresql": {"postgresqlPassword": "hunter2"}, "url": "postgresql://u:p@h/db"}) == [
        ".postgresql.postgresqlPassword", ".url (credentials in a URL)"]


def _referenced(node: object, kind: str) -> set[str]:
    """Names of Secrets (kind="secret") or ConfigMaps (kind="configMap") that ``node`` refers to."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == f"{kind}Ref" or (kind == "secret" and key == "secretKeyRef") or (
                    kind == "configMap" and key == "configMap"):
                names.add(value["name"])
            elif kind == "secret" and key == "secret" and isinstance(value, dict):
                names.add(value["secretName"])
            elif (kind == "secret" and key in ("envSecrets",)) or (kind == "configMap" and key == "envConfigMaps"):
                names |= {ref["name"] for ref in value}
            elif kind == "secret" and key in ("envFromSecret", "postgresqlSecretName"):
                names.add(value)
            else:
                names |= _referenced(value, kind)
    elif isinstance(node, list):
        for value in node:
            names |= _referenced(value, kind)
    return names


def _documented_names() -> set[str]:
    section = README.read_text().split("## Secrets and ConfigMaps you provide", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9.-]+)` \|", section, flags=re.M))


def test_every_referenced_secret_and_configmap_is_defined_or_documented(deployable):
    sources = [deployable, render.load_values(render.DAGSTER_VALUES), render.load_values(render.SUPERSET_VALUES)]
    secrets = set().union(*(_referenced(s, "secret") for s in sources))
    configmaps = set().union(*(_referenced(s, "configMap") for s in sources))
    defined = {o["metadata"]["name"] for o in render.load_manifests() if o["kind"] == "ConfigMap"}
    documented = _documented_names()
    assert {"trialsynth-postgres", "trialsynth-s3", "trialsynth-dagster-postgres", "superset-secrets"} <= secrets
    assert not secrets - documented, f"undocumented Secrets: {sorted(secrets - documented)}"
    assert not configmaps - defined - documented, f"undefined ConfigMaps: {sorted(configmaps - defined - documented)}"


def test_every_trialsynth_image_is_pinned_to_the_project_version(deployable):
    version = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    text = "\n".join(p.read_text() for p in (render.K8S_DIR).rglob("*.yaml"))
    refs = re.findall(r"registry\.example\.com/trialsynth/[a-z-]+(?::[\w.-]+)?", text)
    tags = re.findall(r'^\s*tag: "?([\w.-]+)"?$', text, flags=re.M)
    images = [c["image"] for o in deployable for c in _containers(o)]
    assert images and refs and tags
    assert {r.rsplit(":", 1)[1] for r in refs if ":" in r} == {version}
    assert set(tags) == {version}
    assert all(not i.endswith(":latest") and ":" in i for i in images)


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    if not template:
        return []
    return [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]


_DEV_PATH = re.compile(r"(?<![\w.])(/work/|/root/|/home/|/Users/|[A-Za-z]:\\\\Users\\\\)")


def _files_with_developer_paths(paths: list[Path]) -> list[str]:
    return [f"{p.relative_to(PROJECT_ROOT)}: {m.group(0)}" for p in paths
            for m in [_DEV_PATH.search(p.read_text(errors="replace"))] if m]


def test_no_developer_machine_paths_in_docs_or_manifests():
    infra = [p for d in ("infra/k8s", "infra/docker") for p in (PROJECT_ROOT / d).rglob("*") if p.is_file()
             and p.suffix not in (".pyc",)]
    docs = [PROJECT_ROOT / "README.md", PROJECT_ROOT / ".dockerignore", *(PROJECT_ROOT / "superset_config").glob("*"),
            *[p for p in PROJECT_ROOT.glob("*/README.md")]]
    assert len(infra) >= 10
    assert not _files_with_developer_paths(sorted(set(infra + docs)))
    assert _DEV_PATH.search("see /home/alice/trialsynth/README.md") and not _DEV_PATH.search("/opt/venv/bin")
