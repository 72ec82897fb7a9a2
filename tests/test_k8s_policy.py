"""The hardening policy (infra/k8s/policy.py) on everything trialsynth deploys, and on manifests
built to break each rule: every violation names the object, the container and the missing field."""

from __future__ import annotations

import copy

import pytest
import yaml

from infra.k8s.policy import check, workloads
from infra.k8s.render import all_objects


@pytest.fixture(scope="module")
def deployable() -> list[dict]:
    return all_objects()


def test_every_deployable_workload_passes_the_policy(deployable):
    kinds = {w.obj["kind"] for w in workloads(deployable)}
    assert {"Deployment", "CronJob", "Job"} <= kinds, "the walk must see chart, plain and run-pod workloads"
    violations = check(deployable)
    assert not violations, "\n".join(map(str, violations))


def test_every_pod_is_selected_by_network_policies_for_both_directions(deployable):
    names = {w.ref for w in workloads(deployable)}
    assert {"Deployment/trialsynth-api", "Deployment/dagster-webserver", "Deployment/dagster-daemon",
            "Deployment/dagster-trialsynth", "Job/dagster-run-example", "CronJob/trialsynth-lineage-verify",
            "Deployment/superset"} <= names
    without_policies = [o for o in deployable if o["kind"] != "NetworkPolicy"]
    missing = {(v.obj, v.field) for v in check(without_policies) if v.field.startswith("NetworkPolicy")}
    assert missing == {(n, f) for n in names for f in
                       ("NetworkPolicy (Ingress)", "NetworkPolicy (Egress)", "NetworkPolicy (own flows)")}


BAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: careless, namespace: trialsynth}
spec:
  replicas: 2
  selector: {matchLabels: {app: careless}}
  template:
    metadata: {labels: {app: careless}}
    spec:
      containers:
        - name: web
          image: example/web:1
          securityContext: {runAsNonRoot: true, capabilities: {drop: [NET_RAW]}}
          resources: {requests: {cpu: 100m}}
          livenessProbe: {httpGet: {path: /, port: 80}}
      volumes:
        - {name: host, hostPath: {path: /var/run}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: trialsynth}
spec:
  schedule: "0 1 * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: nightly}}
        spec:
          serviceAccountName: shared
          automountServiceAccountToken: false
          restartPolicy: Never
          securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
          containers:
            - name: task
              image: example/task:1
              securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false,
                                capabilities: {drop: [ALL]}}
              resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 200m, memory: 64Mi}}
              volumeMounts: [{name: tmp, mountPath: /tmp}]
          volumes: [{name: tmp, emptyDir: {}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sidekick, namespace: trialsynth}
spec:
  replicas: 1
  selector: {matchLabels: {app: sidekick}}
  template:
    metadata: {labels: {app: sidekick}}
    spec:
      serviceAccountName: shared
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: app
          image: example/app:1
          securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false,
                            capabilities: {drop: [ALL]}}
          resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 200m, memory: 64Mi}}
          livenessProbe: {httpGet: {path: /, port: 8080}}
          readinessProbe: {httpGet: {path: /, port: 8080}}
          volumeMounts: [{name: tmp, mountPath: /tmp}]
      volumes: [{name: tmp, emptyDir: {}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: trialsynth}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
"""


def test_a_careless_manifest_fails_with_each_missing_field_named():
    found = {(v.obj, v.field) for v in check(list(yaml.safe_load_all(BAD)))}
    web = "Deployment/careless container web"
    expected = {
        (web, "securityContext.readOnlyRootFilesystem"),
        (web, "securityContext.allowPrivilegeEscalation"),
        (web, "securityContext.capabilities.drop"),
        (web, "securityContext.seccompProfile.type"),
        (web, "resources.requests.memory"),
        (web, "resources.limits.cpu"),
        (web, "resources.limits.memory"),
        (web, "volumeMounts[/tmp]"),
        (web, "readinessProbe"),
        ("Deployment/careless", "spec.serviceAccountName"),
        ("Deployment/careless", "spec.automountServiceAccountToken"),
        ("Deployment/careless", "spec.volumes[host].hostPath"),
        ("Deployment/careless", "PodDisruptionBudget"),
        ("Deployment/careless", "NetworkPolicy (own flows)"),
        ("CronJob/nightly", "spec.activeDeadlineSeconds"),
        ("CronJob/nightly", "spec.serviceAccountName"),      # shared with sidekick, no reason given
        ("Deployment/sidekick", "spec.serviceAccountName"),
        ("Deployment/sidekick", "PodDisruptionBudget"),       # singleton without a reason
    }
    assert expected <= found, sorted(expected - found)
    # What the manifests do right is not reported: the web container runs as non-root and has a
    # CPU request and a liveness probe; the CronJob has no probes and needs none.
    assert not {f for o, f in found if o == web} & {"securityContext.runAsNonRoot", "resources.requests.cpu",
                                                    "livenessProbe"}
    assert not {f for o, f in found if o.startswith("CronJob/nightly container")} & {"livenessProbe", "readinessProbe"}


def test_exceptions_need_a_stated_reason(deployable):
    def is_daemon(o: dict) -> bool:
        return o["kind"] == "Deployment" and o["metadata"]["name"] == "dagster-daemon"

    daemon = copy.deepcopy(next(o for o in deployable if is_daemon(o)))
    for meta in (daemon["metadata"], daemon["spec"]["template"]["metadata"]):
        for key in ("trialsynth.io/k8s-api-access", "trialsynth.io/no-pdb-reason"):
            meta["annotations"][key] = ""
    others = [o for o in deployable if not is_daemon(o)]
    fields = {v.field for v in check([*others, daemon]) if v.obj == "Deployment/dagster-daemon"}
    assert {"spec.automountServiceAccountToken", "PodDisruptionBudget"} <= fields


def test_a_token_disabled_on_the_service_account_counts():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
           "spec": {"serviceAccountName": "quiet", "containers": []}}
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "quiet", "namespace": "ns"}}
    assert "spec.automountServiceAccountToken" in {v.field for v in check([pod, sa])}
    sa["automountServiceAccountToken"] = False
    assert "spec.automountServiceAccountToken" not in {v.field for v in check([pod, sa])}
