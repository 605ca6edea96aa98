"""One reconcile of one ``ResonanceCluster``, as a table of contents:

observe → validate → rollout pass → apply children → finish the rollout pass → status → events.

The rollout pass (``rollout_pass``) runs the step machine of ``spec.rollout``: for
canary and blue-green it decides which revision Deployments, Services and HPAs
exist (the topology), and the outcome says when to look again (``requeue_after``).

A spec with semantic errors stops after validation: the status says
``Degraded``/``InvalidSpec`` and no child is touched.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from resonance_operator.api import validation
from resonance_operator.api.conditions import EventReason, EventType
from resonance_operator.api.observed import Observed
from resonance_operator.api.spec import ResonanceCluster, RolloutStrategy, parse
from resonance_operator.desired import children
from resonance_operator.errors import ApiError
from resonance_operator.kube import children as kube_children
from resonance_operator.kube.client import KubeClient
from resonance_operator.probe.pods import PodProbe
from resonance_operator.rollout import plan
from resonance_operator.rollout_pass import Memory, Pass
from resonance_operator.rollout_pass import finish as finish_rollout
from resonance_operator.rollout_pass import run as run_rollout
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
    requeue_after: float | None = None
    """Look again after this many seconds (a rollout step, a drain, an analysis interval)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def reconcile_cluster(
    kube: KubeClient,
    body: Mapping[str, Any],
    *,
    instance: str = "",
    probe: PodProbe | None = None,
    memory: Memory | None = None,
    now: float | None = None,
) -> Outcome | None:
    """Reconcile one cluster; ``None`` when it is being deleted (the garbage collector takes its children).

    ``probe`` reaches the worker Pods (scrapes, drains), ``memory`` keeps this cluster's
    analysis baseline between calls, ``now`` is the rollout clock (epoch seconds).
    """
    if body.get("metadata", {}).get("deletionTimestamp"):
        return None
    cluster = parse(body)
    probe = probe or PodProbe()
    memory = memory or Memory()

    observed, crds = await _observe(kube, cluster)
    invalid = validation.semantic_errors(cluster, observed.referenced_secrets)
    invalid += plan.spec_errors(cluster.spec.rollout, gateway_served=crds.gateway)

    apply_error: str | None = None
    result = kube_children.ApplyResult()
    rollout: Pass | None = None
    if not invalid:
        rollout = await run_rollout(
            kube, probe, cluster, body, observed, memory, time.time() if now is None else now
        )
        desired = children.desired_children(
            cluster,
            service_monitor_crd=crds.service_monitor,
            gateway_crd=crds.gateway,
            fresh=children.FreshSecrets(
                jwt=secrets.token_urlsafe(32),
                neo4j_password=secrets.token_urlsafe(24),
                api_key=secrets.token_urlsafe(32),
            ),
            topology=rollout.topology,
            live_revisions=rollout.live,
        )
        try:
            result = await kube_children.apply_children(kube, cluster, desired, observed)
            await finish_rollout(kube, probe, cluster, observed, rollout)
        except ApiError as exc:
            apply_error = str(exc)
            logger.warning("applying children of %s/%s failed: %s", cluster.namespace, cluster.name, exc)

    status = compute.compute(
        cluster,
        observed,
        now=_now(),
        invalid=invalid,
        apply_error=apply_error,
        applied=result.applied,
        rollout=None if rollout is None or apply_error is not None else rollout.view,
    )
    status_written = await _write_status(kube, cluster, status)
    notes = [] if rollout is None or apply_error is not None else rollout.notes
    events = await _post_events(kube, cluster, status, result, notes, instance=instance)
    return Outcome(
        ready=status["conditions"][0]["status"] == "True",
        invalid=tuple(invalid),
        applied=len(result.applied),
        deleted=len(result.deleted),
        status_written=status_written,
        events=events,
        apply_error=apply_error,
        requeue_after=None if rollout is None else rollout.requeue_after,
    )


@dataclasses.dataclass(frozen=True)
class OptionalApis:
    """Optional APIs (CRDs) the cluster serves."""

    service_monitor: bool
    gateway: bool


async def _observe(kube: KubeClient, cluster: ResonanceCluster) -> tuple[Observed, OptionalApis]:
    service_monitor_crd = await kube_children.service_monitor_crd_present(kube)
    gateway_crd = cluster.spec.rollout.gateway_route is not None and await kube_children.gateway_crd_present(
        kube
    )
    keys = children.possible_keys(cluster, service_monitor_crd=service_monitor_crd, gateway_crd=gateway_crd)
    observed = await kube_children.observe(kube, cluster, keys, validation.referenced_secret_names(cluster))
    if cluster.spec.rollout.strategy is not RolloutStrategy.ROLLING or _has_revisions(cluster):
        # One Deployment per revision: listed, so a revision nobody remembers is still pruned.
        revisions = await kube_children.list_worker_deployments(kube, cluster)
        observed = dataclasses.replace(observed, children={**observed.children, **revisions})
    return observed, OptionalApis(service_monitor_crd, gateway_crd)


def _has_revisions(cluster: ResonanceCluster) -> bool:
    """A cluster switched back to rolling may still run revision Deployments (to prune)."""
    rollout = cluster.status.get("rollout") or {}
    return str(rollout.get("strategy", "rolling")) != RolloutStrategy.ROLLING.value


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
    rollout_notes: list[tuple[EventType, EventReason, str]],
    *,
    instance: str,
) -> int:
    notes = [(t.type, t.reason, t.message) for t in compute.transitions(cluster.status, status)]
    notes += rollout_notes
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
