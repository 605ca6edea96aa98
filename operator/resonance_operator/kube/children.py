"""Observe, apply and prune one cluster's children, and post its Events (its status: ``kube/status.py``)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.api.conditions import EventReason, EventType
from resonance_operator.api.kinds import Kind
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.api.spec import API_VERSION, KIND, ResonanceCluster
from resonance_operator.desired import meta
from resonance_operator.desired.children import Child
from resonance_operator.errors import ConflictError
from resonance_operator.kube.client import KubeClient, collection_path, object_path

logger = logging.getLogger("resonance.operator.kube")
_event_sequence = itertools.count()


def cluster_path(namespace: str, name: str) -> str:
    return f"{collection_path(API_VERSION, KIND, namespace)}/{name}"


async def get_cluster(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    return await kube.get(cluster_path(namespace, name))


async def observe(
    kube: KubeClient, cluster: ResonanceCluster, keys: Sequence[ChildKey], secret_names: Sequence[str]
) -> Observed:
    """GET every possible child and every referenced Secret, concurrently."""
    namespace = cluster.namespace
    children = await asyncio.gather(*(kube.get(object_path(key, namespace)) for key in keys))
    secrets = await asyncio.gather(
        *(kube.get(object_path(ChildKey("v1", "Secret", name), namespace)) for name in secret_names)
    )
    return Observed(
        children=dict(zip(keys, children, strict=True)),
        referenced_secrets=dict(zip(secret_names, secrets, strict=True)),
    )


async def served(kube: KubeClient, kind: Kind) -> bool:
    """Whether the cluster serves ``kind`` (an optional kind only where its CRD is installed)."""
    return not kind.optional or await kube.api_group_version_served(kind.api_version)


async def list_worker_deployments(kube: KubeClient, cluster: ResonanceCluster) -> dict[ChildKey, Any]:
    """Every worker Deployment of the cluster (one per revision during canary / blue-green)."""
    items = await kube.list(
        collection_path("apps/v1", "Deployment", cluster.namespace),
        meta.selector_string(cluster, meta.WORKER),
    )
    return {ChildKey("apps/v1", "Deployment", str(item["metadata"]["name"])): item for item in items}


async def list_worker_pods(kube: KubeClient, cluster: ResonanceCluster) -> list[dict[str, Any]]:
    """The cluster's worker Pods that belong to a revision (canary / blue-green)."""
    return await kube.list(
        collection_path("v1", "Pod", cluster.namespace),
        meta.selector_string(cluster, meta.WORKER) + f",{meta.REVISION_LABEL}",
    )


async def nudge_worker_pods(kube: KubeClient, cluster: ResonanceCluster, annotation: str, value: str) -> int:
    """Set ``annotation`` to ``value`` on each worker Pod that has another: a Pod update makes its
    kubelet sync the Pod, which refreshes its ConfigMap volumes now rather than at its next periodic
    sync (up to a minute). Only Pod metadata changes: no Pod is replaced. Returns how many changed."""
    pods = await kube.list(
        collection_path("v1", "Pod", cluster.namespace), meta.selector_string(cluster, meta.WORKER)
    )
    nudged = 0
    for pod in pods:
        metadata = pod.get("metadata", {})
        if metadata.get("deletionTimestamp") or (metadata.get("annotations") or {}).get(annotation) == value:
            continue
        await kube.patch(
            object_path(ChildKey("v1", "Pod", str(metadata["name"])), cluster.namespace),
            {"metadata": {"annotations": {annotation: value}}},
        )
        nudged += 1
    return nudged


async def remove_annotation(kube: KubeClient, cluster: ResonanceCluster, annotation: str) -> None:
    """Drop one annotation of the cluster (a handled rollout action)."""
    await kube.patch(
        cluster_path(cluster.namespace, cluster.name), {"metadata": {"annotations": {annotation: None}}}
    )


@dataclasses.dataclass
class ApplyResult:
    created: list[ChildKey] = dataclasses.field(default_factory=list)
    updated: list[ChildKey] = dataclasses.field(default_factory=list)
    deleted: list[ChildKey] = dataclasses.field(default_factory=list)
    handed_over: list[tuple[ChildKey, int]] = dataclasses.field(default_factory=list)
    """Scalable children whose replica count went to their autoscaler, with the count kept."""

    @property
    def applied(self) -> list[ChildKey]:
        return self.created + self.updated


def _owned_by(body: Mapping[str, Any], cluster: ResonanceCluster) -> bool:
    return any(
        ref.get("uid") == cluster.metadata.uid for ref in body.get("metadata", {}).get("ownerReferences", [])
    )


async def apply_children(
    kube: KubeClient, cluster: ResonanceCluster, desired: Sequence[Child], observed: Observed
) -> ApplyResult:
    """Apply each desired child that differs from its live object; prune the rest.

    A child whose live object already carries the same spec hash and every
    desired field is not written at all, so a no-op reconcile makes no writes.
    Every write is dry-run first: a child the API refuses (a value the CRD schema
    lets through but, say, Deployment validation does not) fails the reconcile
    before anything is written, instead of leaving the cluster half-applied.
    """
    result = ApplyResult()
    pending = [
        (child, live)
        for child in desired
        if (live := observed.child(child.key)) is None
        or (not child.create_only and meta.needs_apply(child.body, live))
    ]
    for child, _ in pending:
        await _apply(kube, cluster, child, dry_run=True)
    for child, live in pending:
        if live is not None and await hand_over_replicas(kube, cluster, child.body, live):
            result.handed_over.append((child.key, int(live["spec"]["replicas"])))
        await _apply(kube, cluster, child)
        (result.created if live is None else result.updated).append(child.key)
    wanted = {child.key for child in desired}
    for key, live in observed.children.items():
        # Generated Secrets outlive a toggle: turning Neo4j back on must find the password its volume has.
        if live is not None and key not in wanted and key.kind != "Secret" and _owned_by(live, cluster):
            await kube.delete(object_path(key, cluster.namespace))
            result.deleted.append(key)
    return result


HANDOVER_MANAGER_SUFFIX = "-replicas-handover"


def _owns_replicas(live: Mapping[str, Any], manager: str) -> bool:
    return any(
        entry.get("manager") == manager
        and entry.get("operation") == "Apply"
        and "f:replicas" in entry.get("fieldsV1", {}).get("f:spec", {})
        for entry in live.get("metadata", {}).get("managedFields", [])
    )


async def hand_over_replicas(
    kube: KubeClient, cluster: ResonanceCluster, body: Mapping[str, Any], live: Mapping[str, Any]
) -> bool:
    """Before a scalable child is applied without ``spec.replicas`` (an HPA now owns the count), keep
    the live count: server-side apply resets a field no manager owns any more to its default, and a
    5-replica Deployment became 1 at once. Another field manager applies just the live count first,
    so the field stays owned until the HPA's first scale takes it (Kubernetes' documented handover)."""
    if "replicas" in body.get("spec", {}) or live.get("spec", {}).get("replicas") is None:
        return False
    if not _owns_replicas(live, kube.field_manager):
        return False
    handover = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {"name": body["metadata"]["name"], "namespace": cluster.namespace},
        "spec": {"replicas": live["spec"]["replicas"]},
    }
    await kube.apply(handover, cluster.namespace, field_manager=kube.field_manager + HANDOVER_MANAGER_SUFFIX)
    logger.info("replicas of %s handed over at %s", ChildKey.of(body), live["spec"]["replicas"])
    return True


async def _apply(kube: KubeClient, cluster: ResonanceCluster, child: Child, *, dry_run: bool = False) -> None:
    try:
        await kube.apply(child.body, cluster.namespace, dry_run=dry_run)
    except ConflictError:
        # Another manager (usually a hand edit) owns a field we set: the spec wins.
        if not dry_run:
            logger.info("taking over fields of %s from another field manager", child.key)
        await kube.apply(child.body, cluster.namespace, force=True, dry_run=dry_run)


async def post_event(
    kube: KubeClient,
    cluster: ResonanceCluster,
    type_: EventType,
    reason: EventReason,
    message: str,
    *,
    reporting_instance: str,
) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S%f")
    name = f"{cluster.name}.{stamp}{next(_event_sequence)}"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": cluster.namespace},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": cluster.name,
            "namespace": cluster.namespace,
            "uid": cluster.metadata.uid,
        },
        "type": type_.value,
        "reason": reason.value,
        "message": message[:1024],
        "source": {"component": kube.field_manager},
        "reportingComponent": kube.field_manager,
        "reportingInstance": reporting_instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    await kube.create(collection_path("v1", "Event", cluster.namespace), event)
