"""One reconcile of one ``ResonanceCluster``, as a table of contents:

observe → validate → apply children → status → events.

A spec with semantic errors stops after validation: the status says
``Degraded``/``InvalidSpec`` and no child is touched.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from resonance_operator.api import validation
from resonance_operator.api.conditions import EventReason, EventType
from resonance_operator.api.spec import ResonanceCluster, parse
from resonance_operator.desired import children
from resonance_operator.errors import ApiError
from resonance_operator.kube import children as kube_children
from resonance_operator.kube.client import KubeClient
from resonance_operator.status import compute

logger = logging.getLogger("resonance.operator.reconcile")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one reconcile did, for logs, metrics and tests."""

    ready: bool
    invalid: tuple[str, ...]
    applied: int
    deleted: int
    status_written: bool
    events: int
    apply_error: str | None = None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def reconcile_cluster(
    kube: KubeClient, body: Mapping[str, Any], *, instance: str = ""
) -> Outcome | None:
    """Reconcile one cluster; ``None`` when it is being deleted (the garbage collector takes its children)."""
    if body.get("metadata", {}).get("deletionTimestamp"):
        return None
    cluster = parse(body)

    observed, service_monitor_crd = await _observe(kube, cluster)
    invalid = validation.semantic_errors(cluster, observed.referenced_secrets)

    apply_error: str | None = None
    result = kube_children.ApplyResult()
    if not invalid:
        desired = children.desired_children(
            cluster,
            service_monitor_crd=service_monitor_crd,
            fresh=children.FreshSecrets(
                jwt=secrets.token_urlsafe(32), neo4j_password=secrets.token_urlsafe(24)
            ),
        )
        try:
            result = await kube_children.apply_children(kube, cluster, desired, observed)
        except ApiError as exc:
            apply_error = str(exc)
            logger.warning("applying children of %s/%s failed: %s", cluster.namespace, cluster.name, exc)

    status = compute.compute(
        cluster, observed, now=_now(), invalid=invalid, apply_error=apply_error, applied=result.applied
    )
    status_written = await _write_status(kube, cluster, status)
    events = await _post_events(kube, cluster, status, result, instance=instance)
    return Outcome(
        ready=status["conditions"][0]["status"] == "True",
        invalid=tuple(invalid),
        applied=len(result.applied),
        deleted=len(result.deleted),
        status_written=status_written,
        events=events,
        apply_error=apply_error,
    )


async def _observe(kube: KubeClient, cluster: ResonanceCluster) -> tuple[Any, bool]:
    service_monitor_crd = await kube_children.service_monitor_crd_present(kube)
    keys = children.possible_keys(cluster, service_monitor_crd=service_monitor_crd)
    observed = await kube_children.observe(kube, cluster, keys, validation.referenced_secret_names(cluster))
    return observed, service_monitor_crd


async def _write_status(kube: KubeClient, cluster: ResonanceCluster, status: dict[str, Any]) -> bool:
    if not compute.changed(cluster.status, status):
        return False
    await kube_children.write_status(kube, cluster, status)
    return True


async def _post_events(
    kube: KubeClient,
    cluster: ResonanceCluster,
    status: Mapping[str, Any],
    result: kube_children.ApplyResult,
    *,
    instance: str,
) -> int:
    notes = [(t.type, t.reason, t.message) for t in compute.transitions(cluster.status, status)]
    if result.created:
        notes.append(
            (EventType.NORMAL, EventReason.CHILD_CREATED, "created " + ", ".join(map(str, result.created)))
        )
    if result.updated:
        notes.append(
            (EventType.NORMAL, EventReason.CHILD_REPAIRED, "applied " + ", ".join(map(str, result.updated)))
        )
    if result.deleted:
        notes.append(
            (EventType.NORMAL, EventReason.CHILD_DELETED, "deleted " + ", ".join(map(str, result.deleted)))
        )
    for type_, reason, message in notes:
        try:
            await kube_children.post_event(kube, cluster, type_, reason, message, reporting_instance=instance)
        except ApiError as exc:  # an Event is a courtesy; never fail a reconcile over one
            logger.warning("could not post event %s on %s: %s", reason, cluster.name, exc)
    return len(notes)
