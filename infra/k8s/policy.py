"""The hardening policy every trialsynth workload must pass, readable by a reviewer.

:func:`check` walks every pod template in a list of Kubernetes objects (Deployments, StatefulSets,
DaemonSets, Jobs, CronJobs, Pods) and returns one :class:`Violation` per missing field, naming the
object, the container and the field. Rules (infra/k8s/README.md explains each):

- every container: ``runAsNonRoot``, ``readOnlyRootFilesystem``, ``allowPrivilegeEscalation: false``,
  ``capabilities.drop: [ALL]``, ``seccompProfile: RuntimeDefault`` (pod or container level), CPU and
  memory requests and limits, and an ``emptyDir`` mounted at ``/tmp``;
- long-running pods: liveness and readiness probes on every (non-init) container; batch pods
  (Jobs, CronJobs) serve no traffic and get ``activeDeadlineSeconds`` instead;
- a dedicated ServiceAccount (not ``default``, not shared) and no API token mounted
  (``automountServiceAccountToken: false`` on the pod or its ServiceAccount); an exception needs an
  annotation stating why: ``trialsynth.io/shared-service-account``, ``trialsynth.io/k8s-api-access``;
- no hostPath volumes, no host network/PID/IPC;
- a PodDisruptionBudget for every replicated long-running workload, or the annotation
  ``trialsynth.io/no-pdb-reason`` on a singleton;
- every pod selected by NetworkPolicies for both ingress and egress (the default deny) and by at
  least one policy that names its own flows.

Run ``python -m infra.k8s.policy`` to check the deployable objects of :mod:`infra.k8s.render`.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

SHARED_SA = "trialsynth.io/shared-service-account"
API_ACCESS = "trialsynth.io/k8s-api-access"
NO_PDB = "trialsynth.io/no-pdb-reason"
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"}
BATCH = {"Job", "CronJob"}


@dataclass(frozen=True)
class Violation:
    """``obj`` (``Kind/name``, with `` container c`` when it is about one container) lacks ``field``."""

    obj: str
    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.field} — {self.rule}"


@dataclass(frozen=True)
class Workload:
    obj: dict[str, Any]
    pod: dict[str, Any]        # pod template: {"metadata": ..., "spec": ...}
    job_spec: dict[str, Any] | None

    @property
    def ref(self) -> str:
        return f"{self.obj['kind']}/{self.obj['metadata']['name']}"

    @property
    def namespace(self) -> str:
        return self.obj["metadata"].get("namespace", "default")

    @property
    def labels(self) -> dict[str, str]:
        return self.pod.get("metadata", {}).get("labels") or {}

    @property
    def annotations(self) -> dict[str, str]:
        return {**(self.obj["metadata"].get("annotations") or {}),
                **(self.pod.get("metadata", {}).get("annotations") or {})}

    @property
    def replicas(self) -> int:
        return int(self.obj.get("spec", {}).get("replicas", 1))


def workloads(objects: list[dict[str, Any]]) -> list[Workload]:
    """Every object that runs pods, with its pod template (and job spec for batch kinds)."""
    found = []
    for obj in objects:
        kind, spec = obj.get("kind"), obj.get("spec", {})
        if kind == "Pod":
            found.append(Workload(obj, obj, None))
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            found.append(Workload(obj, spec["template"], None))
        elif kind == "Job":
            found.append(Workload(obj, spec["template"], spec))
        elif kind == "CronJob":
            job_spec = spec["jobTemplate"]["spec"]
            found.append(Workload(obj, job_spec["template"], job_spec))
    return found


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics for ``matchLabels`` (an empty selector matches all)."""
    if selector.get("matchExpressions"):
        raise ValueError(f"matchExpressions are not supported by this policy check: {selector}")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _effective(key: str, container: dict, pod_spec: dict) -> Any:
    value = (container.get("securityContext") or {}).get(key)
    return value if value is not None else (pod_spec.get("securityContext") or {}).get(key)


def _container_violations(w: Workload, c: dict, *, init: bool) -> list[Violation]:
    spec = w.pod["spec"]
    ref = f"{w.ref} container {c['name']}"
    sc = c.get("securityContext") or {}
    out = []
    if _effective("runAsNonRoot", c, spec) is not True:
        out.append(Violation(ref, "securityContext.runAsNonRoot", "must be true (pod or container)"))
    if sc.get("readOnlyRootFilesystem") is not True:
        out.append(Violation(ref, "securityContext.readOnlyRootFilesystem", "must be true"))
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(Violation(ref, "securityContext.allowPrivilegeEscalation", "must be false"))
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        out.append(Violation(ref, "securityContext.capabilities.drop", "must contain ALL"))
    if (_effective("seccompProfile", c, spec) or {}).get("type") != "RuntimeDefault":
        out.append(Violation(ref, "securityContext.seccompProfile.type", "must be RuntimeDefault (pod or container)"))
    resources = c.get("resources") or {}
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if not (resources.get(section) or {}).get(resource):
                out.append(Violation(ref, f"resources.{section}.{resource}", "must be set"))
    empty_dirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
    if not any(m.get("mountPath") == "/tmp" and m.get("name") in empty_dirs for m in c.get("volumeMounts") or []):
        out.append(Violation(ref, "volumeMounts[/tmp]", "an emptyDir must be mounted at /tmp (read-only root)"))
    if not init and w.obj["kind"] in LONG_RUNNING:
        for probe in ("livenessProbe", "readinessProbe"):
            if not c.get(probe):
                out.append(Violation(ref, probe, "must be set on a long-running container"))
    return out


def _pod_violations(w: Workload, service_accounts: dict[str, dict]) -> list[Violation]:
    spec, notes, out = w.pod["spec"], w.annotations, []
    for c in spec.get("initContainers") or []:
        out += _container_violations(w, c, init=True)
    for c in spec.get("containers") or []:
        out += _container_violations(w, c, init=False)
    sa = spec.get("serviceAccountName") or "default"
    if sa == "default":
        out.append(Violation(w.ref, "spec.serviceAccountName", "must name a dedicated ServiceAccount, not default"))
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = (service_accounts.get((w.namespace, sa)) or {}).get("automountServiceAccountToken", True)
    if automount is not False and not notes.get(API_ACCESS):
        out.append(Violation(w.ref, "spec.automountServiceAccountToken",
                             f"must be false (pod or ServiceAccount) unless annotated {API_ACCESS} with the reason"))
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            out.append(Violation(w.ref, f"spec.{flag}", "must not be true"))
    for v in spec.get("volumes") or []:
        if "hostPath" in v:
            out.append(Violation(w.ref, f"spec.volumes[{v['name']}].hostPath",
                                 "host paths are not allowed; use a PersistentVolumeClaim"))
    if w.obj["kind"] in BATCH and not (w.job_spec or {}).get("activeDeadlineSeconds"):
        out.append(Violation(w.ref, "spec.activeDeadlineSeconds", "a batch pod must have a deadline"))
    return out


def _shared_service_accounts(ws: list[Workload]) -> list[Violation]:
    users: dict[tuple[str, str], list[Workload]] = defaultdict(list)
    for w in ws:
        users[(w.namespace, w.pod["spec"].get("serviceAccountName") or "default")].append(w)
    out = []
    for (_, sa), group in sorted(users.items()):
        if len(group) > 1:
            out += [Violation(w.ref, "spec.serviceAccountName",
                              f"ServiceAccount {sa} is shared with {', '.join(o.ref for o in group if o is not w)}; "
                              f"use one per workload or annotate {SHARED_SA} with the reason")
                    for w in group if not w.annotations.get(SHARED_SA)]
    return out


def _pdb_violations(ws: list[Workload], objects: list[dict]) -> list[Violation]:
    pdbs = [o for o in objects if o.get("kind") == "PodDisruptionBudget"]
    out = []
    for w in ws:
        if w.obj["kind"] not in LONG_RUNNING - {"Pod"} or w.replicas == 0:
            continue
        covered = any(p["metadata"].get("namespace", "default") == w.namespace
                      and selector_matches(p["spec"]["selector"], w.labels) for p in pdbs)
        if w.replicas >= 2 and not covered:
            out.append(Violation(w.ref, "PodDisruptionBudget", "no PodDisruptionBudget selects its pods"))
        elif w.replicas == 1 and not covered and not w.annotations.get(NO_PDB):
            out.append(Violation(w.ref, "PodDisruptionBudget",
                                 f"a singleton needs a PodDisruptionBudget or the annotation {NO_PDB}"))
    return out


def _network_violations(ws: list[Workload], objects: list[dict]) -> list[Violation]:
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    out = []
    for w in ws:
        selecting = [p for p in policies if p["metadata"].get("namespace", "default") == w.namespace
                     and selector_matches(p["spec"]["podSelector"], w.labels)]
        for direction in ("Ingress", "Egress"):
            if not any(direction in p["spec"].get("policyTypes", ["Ingress"]) for p in selecting):
                out.append(Violation(w.ref, f"NetworkPolicy ({direction})", "no NetworkPolicy selects its pods"))
        if not any(p["spec"]["podSelector"].get("matchLabels") for p in selecting):
            out.append(Violation(w.ref, "NetworkPolicy (own flows)",
                                 "no NetworkPolicy selects these pods by label to allow the flows they need"))
    return out


def check(objects: list[dict[str, Any]]) -> list[Violation]:
    """Every hardening violation among ``objects`` (empty when all pass)."""
    ws = workloads(objects)
    service_accounts = {(o["metadata"].get("namespace", "default"), o["metadata"]["name"]): o
                        for o in objects if o.get("kind") == "ServiceAccount"}
    out = []
    for w in ws:
        out += _pod_violations(w, service_accounts)
    return out + _shared_service_accounts(ws) + _pdb_violations(ws, objects) + _network_violations(ws, objects)


def main() -> int:
    from infra.k8s.render import all_objects

    violations = check(all_objects())
    for v in violations:
        print(v)
    print(f"{len(violations)} violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
