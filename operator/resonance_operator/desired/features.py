"""``spec.features`` as the workers read it: the ``<name>-features`` ConfigMap, mounted in every
worker Pod at :data:`MOUNT_PATH`.

Changing the flags changes only this ConfigMap: it is not part of the settings' config hash nor
of a revision's Pod template, so no Pod is replaced; the kubelet updates the mounted file (a
``..data`` symlink swap) and every worker re-reads it (``resonance_worker.transport.features``).
The reconciler then annotates the worker Pods (metadata only, :data:`VERSION_ANNOTATION`) so
their kubelets sync them, and so the volume, at once.
The volume is ``optional``, so a Pod starts even before the ConfigMap exists (no flags).
"""

from __future__ import annotations

import json
from typing import Any

from resonance_operator.api.observed import ChildKey
from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.desired import meta

VERSION_ANNOTATION = "resonance.liminal.dev/features-version"
"""Set on the worker Pods (metadata only) when the flags change, so their kubelets refresh the
mounted file now: see ``kube.children.nudge_worker_pods``."""
MOUNT_PATH = "/etc/resonance/features"
FILE_KEY = "features.json"
FILE_PATH = f"{MOUNT_PATH}/{FILE_KEY}"
VOLUME = "features"


def configmap_name(cluster: ResonanceCluster) -> str:
    return meta.child_name(cluster, "features")


def flags_document(cluster: ResonanceCluster) -> list[dict[str, Any]]:
    """The flags in the workers' file format (the CRD's shape, without empty fields)."""
    return [
        flag.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
        | {"name": flag.name}
        for flag in cluster.spec.features
    ]


def configmap_key(cluster: ResonanceCluster) -> ChildKey:
    return ChildKey("v1", "ConfigMap", configmap_name(cluster))


def version(cluster: ResonanceCluster) -> str:
    """A digest of the flags as rendered (what the Pods' annotation carries)."""
    return meta.content_hash(flags_document(cluster))[:12]


def configmap(cluster: ResonanceCluster) -> dict[str, Any]:
    text = json.dumps(flags_document(cluster), indent=1, sort_keys=True)
    return meta.with_spec_hash(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta.metadata(cluster, configmap_name(cluster), meta.WORKER),
            "data": {FILE_KEY: text + "\n"},
        }
    )


def volume(cluster: ResonanceCluster) -> dict[str, Any]:
    return {"name": VOLUME, "configMap": {"name": configmap_name(cluster), "optional": True}}


def volume_mount() -> dict[str, Any]:
    return {"name": VOLUME, "mountPath": MOUNT_PATH, "readOnly": True}
