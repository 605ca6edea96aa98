"""Names, labels, owner references and the spec hash shared by every builder."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from resonance_operator.api.spec import API_VERSION, KIND, ResonanceCluster

SPEC_HASH_ANNOTATION = "resonance.liminal.dev/spec-hash"
CONFIG_HASH_ANNOTATION = "resonance.liminal.dev/config-hash"
CLUSTER_LABEL = "resonance.liminal.dev/cluster"
COMPONENT_LABEL = "app.kubernetes.io/component"
# The worker revision (hash of the Pod template) of a canary/blue-green Pod; never on other Pods.
REVISION_LABEL = "resonance.liminal.dev/revision"
MANAGED_BY = "resonance-operator"

WORKER = "worker"
REDIS = "redis"
NEO4J = "neo4j"
BACKUP = "backup"

# Children are named "<cluster>-<suffix>"; the longest suffix plus the
# StatefulSet pod ordinal must still fit a 63-character DNS label.
MAX_CLUSTER_NAME_LENGTH = 40


def child_name(cluster: ResonanceCluster, suffix: str) -> str:
    return f"{cluster.name}-{suffix}"


def selector_labels(cluster: ResonanceCluster, component: str) -> dict[str, str]:
    """Labels a selector matches on; never changed after creation."""
    return {CLUSTER_LABEL: cluster.name, COMPONENT_LABEL: component}


def labels(cluster: ResonanceCluster, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"resonance-{component}",
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/part-of": "resonance-liminal",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(cluster, component),
    }


def selector_string(cluster: ResonanceCluster, component: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(cluster, component).items()))


def owner_reference(cluster: ResonanceCluster) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": cluster.name,
        "uid": cluster.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    cluster: ResonanceCluster, name: str, component: str, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": cluster.namespace,
        "labels": labels(cluster, component),
        "ownerReferences": [owner_reference(cluster)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def content_hash(value: Any) -> str:
    """A short stable hash of any JSON-serialisable value."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_spec_hash(body: dict[str, Any]) -> dict[str, Any]:
    """Stamp ``body`` with the hash of itself (without the stamp)."""
    digest = content_hash(body)
    body.setdefault("metadata", {}).setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = digest
    return body


def spec_hash(body: Mapping[str, Any] | None) -> str | None:
    if body is None:
        return None
    annotations = body.get("metadata", {}).get("annotations") or {}
    value = annotations.get(SPEC_HASH_ANNOTATION)
    return str(value) if value is not None else None


def int_or_string(value: str | int) -> str | int:
    """``"1"`` → ``1``; ``"25%"`` stays: the API refuses non-percent strings there."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


# Keys whose values the API server canonicalises (quantities such as "0.5" → "500m"),
# so a textual comparison would report drift that is not there.
_CANONICALISED_KEYS = frozenset({"resources", "storage"})


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field of ``desired`` has the same value in ``live``.

    Extra fields in ``live`` (server defaults, status) are fine; lists must have
    the same length and match element by element.
    """
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(
            key in live and (key in _CANONICALISED_KEYS or is_subset(value, live[key]))
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
    return bool(desired == live)


def needs_apply(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """Whether applying ``desired`` would change ``live``.

    The spec hash catches every change the operator makes; the subset check
    catches a hand edit of a field the operator owns.
    """
    if live is None or spec_hash(desired) != spec_hash(live):
        return True
    desired_fields = {key: value for key, value in desired.items() if key not in {"apiVersion", "kind"}}
    return not is_subset(desired_fields, live)
