"""Every Kubernetes object trialsynth deploys, as plain dicts, for validation and the policy check.

``helm`` cannot be installed from this project's package registries, so the two charts are not
rendered with ``helm template``. Instead:

- the plain manifests (``manifests/*.yaml``) are loaded as they are;
- the run pods of Dagster's K8sRunLauncher are built by dagster-k8s itself
  (:func:`dagster_k8s.job.construct_dagster_k8s_job`) from the launcher config the chart writes
  into ``dagster.yaml`` (:func:`dagster_instance_config` mirrors the chart's
  ``_run-launcher.tpl`` / ``_run-coordinator.tpl``);
- the chart-owned Deployments (Dagster webserver, daemon, code server; Superset) are modelled on
  the charts' templates for the fields the hardening policy reads. Those templates copy these
  values verbatim (``podSecurityContext``, ``securityContext``, ``resources``, probes, volumes,
  labels, annotations) and hard-code a few things the model reproduces (e.g. the Dagster chart
  sets ``automountServiceAccountToken: true`` on the webserver and code servers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

K8S_DIR = Path(__file__).resolve().parent
MANIFESTS_DIR = K8S_DIR / "manifests"
DAGSTER_VALUES = K8S_DIR / "dagster" / "values.yaml"
DAGSTER_KEYS_SCHEMA = K8S_DIR / "dagster" / "values.keys.schema.json"
SUPERSET_VALUES = K8S_DIR / "superset" / "values.yaml"
NAMESPACE = "trialsynth"
DAGSTER_RELEASE = "dagster"
SUPERSET_RELEASE = "superset"

# Dagster's chart: names derived from the release (`dagster.fullname` is the release name when it
# contains the chart name), container name = chart name.
_DAGSTER_SA = "dagster"
_USER_DEPLOYMENTS_SA = f"{DAGSTER_RELEASE}-user-deployments"


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """All non-empty YAML documents of ``path``."""
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def load_manifests(directory: Path = MANIFESTS_DIR) -> list[dict[str, Any]]:
    """The Kubernetes objects of ``manifests/`` (the kustomization file is not an API object)."""
    objects = []
    for path in sorted(directory.glob("*.yaml")):
        objects += [d for d in load_yaml_documents(path) if d.get("kind") != "Kustomization"]
    return objects


def load_values(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return yaml.safe_load(f)


def _image(image: dict[str, str]) -> str:
    return f"{image['repository']}:{image['tag']}"


def _meta(name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "labels": dict(labels or {})}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _deployment(name: str, replicas: int, selector: dict[str, str], pod_labels: dict[str, str],
                annotations: dict[str, str] | None, pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(name, pod_labels, annotations),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": {**selector, **pod_labels}, "annotations": dict(annotations or {})},
                         "spec": pod_spec},
        },
    }


def _without_enabled(probe: dict[str, Any] | None) -> dict[str, Any] | None:
    if not probe or probe.get("enabled") is False:
        return None
    return {k: v for k, v in probe.items() if k != "enabled"}


def _grpc_probe(probe: dict[str, Any] | None, port: int) -> dict[str, Any] | None:
    """The code-server probe as the chart writes it: our timings, its gRPC health-check command."""
    probe = _without_enabled(probe)
    if probe is None:
        return None
    if "exec" not in probe:
        probe = {"exec": {"command": ["dagster", "api", "grpc-health-check", "-p", str(port)]}, **probe}
    return probe


def _container(name: str, image: str, values: dict[str, Any], *, port: int | None = None,
               startup: dict[str, Any] | None = None, liveness: dict[str, Any] | None = None,
               readiness: dict[str, Any] | None = None, extra_mounts: list[dict] | None = None,
               security_key: str = "securityContext") -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name, "image": image,
        "securityContext": values.get(security_key) or {},
        "resources": values.get("resources") or {},
        "volumeMounts": list(extra_mounts or []) + list(values.get("volumeMounts") or values.get("extraVolumeMounts") or []),
    }
    if port is not None:
        container["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    for key, probe in (("startupProbe", startup), ("livenessProbe", liveness), ("readinessProbe", readiness)):
        if probe:
            container[key] = probe
    return container


def dagster_chart_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The webserver, daemon and code-server Deployments the dagster/dagster chart renders."""
    objects = []
    home = values["global"]["dagsterHome"]
    instance_mount = {"name": "dagster-instance", "mountPath": f"{home}/dagster.yaml", "subPath": "dagster.yaml"}
    instance_volume = {"name": "dagster-instance", "configMap": {"name": f"{DAGSTER_RELEASE}-instance"}}
    selector_base = {"app.kubernetes.io/name": "dagster", "app.kubernetes.io/instance": DAGSTER_RELEASE}

    web = values["dagsterWebserver"]
    web_container = _container(
        "dagster", _image(web["image"]), web, port=web["service"]["port"],
        startup=_without_enabled(web.get("startupProbe")), liveness=web.get("livenessProbe"),
        readiness=web.get("readinessProbe"),
        extra_mounts=[instance_mount, {"name": "dagster-workspace-yaml", "mountPath": "/dagster-workspace/"}])
    objects.append(_deployment(
        f"{DAGSTER_RELEASE}-webserver", web["replicaCount"], {**selector_base, "component": "dagster-webserver"},
        web.get("labels"), web.get("annotations"),
        {"serviceAccountName": _DAGSTER_SA, "automountServiceAccountToken": True,
         "securityContext": web.get("podSecurityContext") or {}, "containers": [web_container],
         "volumes": [instance_volume,
                     {"name": "dagster-workspace-yaml", "configMap": {"name": f"{DAGSTER_RELEASE}-workspace-yaml"}},
                     *web.get("volumes", [])]}))

    daemon = values["dagsterDaemon"]
    daemon_container = _container(
        "dagster", _image(daemon["image"]), daemon, startup=_without_enabled(daemon.get("startupProbe")),
        liveness=daemon.get("livenessProbe"), readiness=daemon.get("readinessProbe"), extra_mounts=[instance_mount])
    objects.append(_deployment(
        f"{DAGSTER_RELEASE}-daemon", 1, {**selector_base, "component": "dagster-daemon", "deployment": "daemon"},
        daemon.get("labels"), daemon.get("annotations"),
        {"serviceAccountName": _DAGSTER_SA, "securityContext": daemon.get("podSecurityContext") or {},
         "containers": [daemon_container], "volumes": [instance_volume, *daemon.get("volumes", [])]}))

    for dep in values["dagster-user-deployments"]["deployments"]:
        port = dep["port"]
        container = _container(
            "dagster-user-deployments", _image(dep["image"]), dep,
            startup=_grpc_probe(dep.get("startupProbe"), port), liveness=_grpc_probe(dep.get("livenessProbe"), port),
            readiness=_grpc_probe(dep.get("readinessProbe") or {"enabled": True}, port))
        container["ports"] = [{"name": "grpc", "containerPort": port, "protocol": "TCP"}]
        objects.append(_deployment(
            f"{DAGSTER_RELEASE}-{dep['name']}", dep.get("replicaCount", 1),
            {**selector_base, "component": "user-deployments", "deployment": dep["name"]},
            dep.get("labels"), dep.get("annotations"),
            {"serviceAccountName": _USER_DEPLOYMENTS_SA, "automountServiceAccountToken": True,
             "securityContext": dep.get("podSecurityContext") or {}, "containers": [container],
             "volumes": list(dep.get("volumes", []))}))
    return objects


def dagster_instance_config(values: dict[str, Any]) -> dict[str, Any]:
    """The ``run_launcher`` and ``run_coordinator`` sections the chart writes into ``dagster.yaml``."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {
        "load_incluster_config": launcher["loadInclusterConfig"],
        "job_namespace": launcher.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": _DAGSTER_SA,
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": f"{DAGSTER_RELEASE}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    if values.get("imagePullSecrets"):
        config["image_pull_secrets"] = values["imagePullSecrets"]
    simple = {"envVars": "env_vars", "volumeMounts": "volume_mounts", "volumes": "volumes", "labels": "labels",
              "resources": "resources", "schedulerName": "scheduler_name", "securityContext": "security_context"}
    for key, name in (("envConfigMaps", "env_config_maps"), ("envSecrets", "env_secrets")):
        if launcher.get(key):
            config[name] = [ref["name"] for ref in launcher[key]]
    for key, name in simple.items():
        if launcher.get(key):
            config[name] = launcher[key]
    if launcher.get("failPodOnRunFailure"):
        config["fail_pod_on_run_failure"] = True
    run_k8s = launcher.get("runK8sConfig") or {}
    parts = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
             "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
             "jobMetadata": "job_metadata"}
    if run_k8s:
        config["run_k8s_config"] = {parts[k]: v for k, v in run_k8s.items() if v}

    return {
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config},
        "run_coordinator": _run_coordinator(values["dagsterDaemon"]["runCoordinator"]),
    }


def _run_coordinator(values: dict[str, Any]) -> dict[str, Any]:
    """The ``run_coordinator`` section the chart's _run-coordinator.tpl writes for a CustomRunCoordinator
    (trialsynth's, see values.yaml)."""
    if values["type"] != "CustomRunCoordinator":
        raise ValueError(f"dagsterDaemon.runCoordinator.type is {values['type']!r}: trialsynth needs its "
                         "CustomRunCoordinator (trialsynth.run_queue) so every run carries its tenant tag")
    custom = values["config"]["customRunCoordinator"]
    return {"module": custom["module"], "class": custom["class"], "config": custom["config"]}


def dagster_run_job(values: dict[str, Any], job_name: str = "dagster-run-example") -> dict[str, Any]:
    """The Kubernetes Job the K8sRunLauncher creates for one run, built by dagster-k8s itself."""
    from types import SimpleNamespace

    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
    from kubernetes.client import ApiClient

    launcher = dagster_instance_config(values)["run_launcher"]["config"]
    image = _image(values["dagster-user-deployments"]["deployments"][0]["image"])
    context = K8sContainerContext().merge(K8sContainerContext(
        image_pull_policy=launcher["image_pull_policy"], image_pull_secrets=launcher.get("image_pull_secrets"),
        service_account_name=launcher["service_account_name"], env_config_maps=launcher.get("env_config_maps"),
        env_secrets=launcher.get("env_secrets"), env_vars=launcher.get("env_vars"),
        volume_mounts=launcher.get("volume_mounts"), volumes=launcher.get("volumes"), labels=launcher.get("labels"),
        namespace=launcher["job_namespace"], resources=launcher.get("resources"),
        security_context=launcher.get("security_context"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher.get("run_k8s_config") or {})))
    run_launcher = SimpleNamespace(job_image=image, **{k: launcher[k] for k in (
        "dagster_home", "instance_config_map", "postgres_password_secret")})
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=image, run_launcher=run_launcher),
        args=["dagster", "api", "execute_run", "{}"], job_name=job_name, pod_name=job_name,
        component="run_worker", user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": "study_pipeline"}, env_vars=[])
    rendered = ApiClient().sanitize_for_serialization(job)
    rendered["metadata"]["namespace"] = launcher["job_namespace"]
    return rendered


def superset_chart_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The Superset node Deployment the Superset chart renders (the init Job and workers are off)."""
    node = values["supersetNode"]
    port = values["service"]["port"]
    config_mount = {"name": "superset-config", "mountPath": "/app/pythonpath", "readOnly": True}
    container = _container(
        SUPERSET_RELEASE, _image(values["image"]), {**node, "volumeMounts": values.get("extraVolumeMounts", [])},
        port=port, startup=node.get("startupProbe"), liveness=node.get("livenessProbe"),
        readiness=node.get("readinessProbe"), extra_mounts=[config_mount], security_key="containerSecurityContext")
    container["command"] = node["command"]
    init_containers = [{**c, "volumeMounts": list(c.get("volumeMounts", []))} for c in node.get("initContainers", [])]
    pod_spec = {
        "serviceAccountName": values["serviceAccountName"],
        "securityContext": node.get("podSecurityContext") or {},
        "initContainers": init_containers,
        "containers": [container],
        "volumes": [{"name": "superset-config", "secret": {"secretName": f"{SUPERSET_RELEASE}-config"}},
                    *values.get("extraVolumes", [])],
    }
    selector = {"app": SUPERSET_RELEASE, "release": SUPERSET_RELEASE}
    deployment = _deployment(SUPERSET_RELEASE, node["replicas"]["replicaCount"], selector,
                             node.get("podLabels"), node.get("podAnnotations"), pod_spec)
    deployment["spec"]["strategy"] = node.get("strategy", {})
    return [deployment]


def all_objects() -> list[dict[str, Any]]:
    """Plain manifests + chart workloads + one K8sRunLauncher run Job: what a cluster would hold."""
    dagster_values = load_values(DAGSTER_VALUES)
    return [*load_manifests(), *dagster_chart_objects(dagster_values), dagster_run_job(dagster_values),
            *superset_chart_objects(load_values(SUPERSET_VALUES))]
