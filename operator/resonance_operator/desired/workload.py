"""Pod-level pieces shared by the worker Deployment and the data StatefulSets."""

from __future__ import annotations

from typing import Any

from resonance_operator.api.spec import Resources, Scheduling

# The worker image and our Redis/Neo4j pods run as this non-root user.
NON_ROOT_UID = 10001


def resources(spec: Resources) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.requests:
        out["requests"] = dict(spec.requests)
    if spec.limits:
        out["limits"] = dict(spec.limits)
    return out


def container_security_context(*, read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security_context(uid: int = NON_ROOT_UID) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def apply_scheduling(pod_spec: dict[str, Any], scheduling: Scheduling) -> dict[str, Any]:
    if scheduling.node_selector:
        pod_spec["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in scheduling.tolerations]
    return pod_spec
