"""One reconcile of one ``ResonanceCluster``, as a table of contents.

:func:`reconcile_cluster` reads, in order:

1. **observe** the children the cluster could have, the Secrets it names and the
   optional APIs served (``kube.children.observe``);
2. **validate** the spec (``api/validation.py``, ``rollout/plan.spec_errors``); a spec
   with semantic errors stops here: ``Degraded``/``InvalidSpec``, no child touched;
3. **rollout pass**: observe the Pods (``rollout_pass.observe``), take the step
   (``rollout_pass.step``, pure: the decision, the topology of revisions, the new
   memory);
4. **apply** the children the pure builders want for that topology (``desired/``),
   then **act** on the decision (``rollout_pass.act``: drains, annotation);
5. **status**, computed purely (``status/``) and written only when it changed, with
   an optimistic lock (``kube/status.py``);
6. **events** for the transitions and what was applied.

The outcome says when to look again (``requeue_after``) and carries the memory for
this cluster's next pass.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.api import kinds, validation
from resonance_operator.api.conditions import ConditionType, EventReason, EventType
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.api.spec import ResonanceCluster, RolloutStrategy, parse
from resonance_operator.desired import children, features, revisions, worker
from resonance_operator.desired import secrets as worker_secrets
from resonance_operator.errors import ApiError
from resonance_operator.kube import children as kube_children
from resonance_operator.kube.client import KubeClient
from resonance_operator.kube.status import Render, StatusWrite, write_status
from resonance_operator.probe.pods import PodProbe
from resonance_operator.rollout import plan
from resonance_operator.rollout_pass import act, observe, step
from resonance_operator.rollout_pass.step import Memory, Pass
from resonance_operator.status import compute, conditions
from resonance_operator.status.facts import requested_monitors

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
    memory: Memory = dataclasses.field(default_factory=Memory)
    """This cluster's rollout memory for the next reconcile (the analysis baseline)."""


@dataclasses.dataclass(frozen=True)
class OptionalApis:
    """Optional APIs (CRDs) the cluster serves."""

    service_monitor: bool
    gateway: bool
    pod_monitor: bool = False
    keda: bool = False
    """KEDA's ScaledObject is served (``autoscaling.targetConnectionsPerPod`` acts through it)."""


@dataclasses.dataclass(frozen=True)
class Applied:
    """What applying the children (and acting on the rollout decision) did."""

    result: kube_children.ApplyResult = dataclasses.field(default_factory=kube_children.ApplyResult)
    error: str | None = None


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

    ``probe`` reaches the worker Pods (scrapes, drains), ``memory`` is this cluster's from the last
    outcome, ``now`` the clock of this reconcile (epoch seconds; read once when not given).
    """
    if body.get("metadata", {}).get("deletionTimestamp"):
        return None
    cluster = parse(body)
    probe = probe or PodProbe()
    memory = memory or Memory()
    now = time.time() if now is None else now

    observed, apis = await _observe(kube, cluster)
    invalid = _invalid(cluster, observed, apis)
    fresh = _fresh_secrets()
    withheld = _withheld(cluster, observed, fresh)
    digest = children.secrets_hash(
        cluster,
        fresh,
        _live_secrets(observed),
        withhold=withheld,
        held=_held_secrets_hash(cluster, observed),
    )
    rollout = None if invalid else await _rollout_pass(kube, probe, cluster, observed, memory, now, digest)
    applied = (
        Applied()
        if rollout is None
        else await _apply(kube, probe, cluster, observed, apis, rollout, fresh, withheld)
    )
    # A pass whose children could not be applied is not reported: the status says ApplyFailed.
    reported = None if applied.error is not None else rollout
    written = await write_status(
        kube, cluster, _render(cluster, observed, apis, invalid, applied, reported, now, withheld)
    )
    events = await _post_events(kube, cluster, written, applied.result, reported, instance=instance)
    return Outcome(
        ready=conditions.is_true(written.status["conditions"], ConditionType.READY),
        invalid=tuple(invalid),
        applied=len(applied.result.applied),
        deleted=len(applied.result.deleted),
        status_written=written.written,
        events=events,
        apply_error=applied.error,
        requeue_after=None if rollout is None else rollout.requeue_after,
        memory=memory if rollout is None else rollout.memory,
    )


async def _observe(kube: KubeClient, cluster: ResonanceCluster) -> tuple[Observed, OptionalApis]:
    service_monitor_crd = await kube_children.served(kube, kinds.SERVICE_MONITOR)
    pod_monitor_crd = await kube_children.served(kube, kinds.POD_MONITOR)
    # Discovery of the Gateway API only when the spec asks for a route.
    wants_route = cluster.spec.rollout.gateway_route is not None
    gateway_crd = wants_route and await kube_children.served(kube, kinds.HTTP_ROUTE)
    # Asked whatever the spec: a ScaledObject the spec no longer wants is pruned.
    keda_crd = await kube_children.served(kube, kinds.SCALED_OBJECT)
    keys = children.possible_keys(
        cluster,
        service_monitor_crd=service_monitor_crd,
        gateway_crd=gateway_crd,
        pod_monitor_crd=pod_monitor_crd,
        keda_crd=keda_crd,
    )
    observed = await kube_children.observe(kube, cluster, keys, validation.referenced_secret_names(cluster))
    if cluster.spec.rollout.strategy is not RolloutStrategy.ROLLING or _has_revisions(cluster):
        # One Deployment per revision: listed, so a revision nobody remembers is still pruned.
        revisions = await kube_children.list_worker_deployments(kube, cluster)
        observed = dataclasses.replace(observed, children={**observed.children, **revisions})
    return observed, OptionalApis(service_monitor_crd, gateway_crd, pod_monitor_crd, keda_crd)


def _has_revisions(cluster: ResonanceCluster) -> bool:
    """A cluster switched back to rolling may still run revision Deployments (to prune)."""
    rollout = cluster.status.get("rollout") or {}
    return str(rollout.get("strategy", "rolling")) != RolloutStrategy.ROLLING.value


async def _rollout_pass(
    kube: KubeClient,
    probe: PodProbe,
    cluster: ResonanceCluster,
    observed: Observed,
    memory: Memory,
    now: float,
    secrets_hash: str | None,
) -> Pass:
    """Observe what the rollout machine needs, then take its step (pure)."""
    observation = await observe.gather(kube, probe, cluster, observed, now)
    observation = dataclasses.replace(observation, secrets_hash=secrets_hash)
    return step.take(observation, memory, now)


def _invalid(cluster: ResonanceCluster, observed: Observed, apis: OptionalApis) -> list[str]:
    invalid = validation.semantic_errors(cluster, observed.referenced_secrets)
    return invalid + plan.spec_errors(cluster.spec.rollout, gateway_served=apis.gateway)


async def _apply(
    kube: KubeClient,
    probe: PodProbe,
    cluster: ResonanceCluster,
    observed: Observed,
    apis: OptionalApis,
    rollout: Pass,
    fresh: children.FreshSecrets,
    withheld: Sequence[str],
) -> Applied:
    """Apply the children the spec and the rollout's topology want, then act on the rollout decision."""
    desired = children.desired_children(
        cluster,
        service_monitor_crd=apis.service_monitor,
        gateway_crd=apis.gateway,
        pod_monitor_crd=apis.pod_monitor,
        keda_crd=apis.keda,
        fresh=fresh,
        topology=rollout.topology,
        live_revisions=rollout.live,
        live_secrets=_live_secrets(observed),
        withhold=withheld,
        held_secrets_hash=_held_secrets_hash(cluster, observed),
    )
    result = kube_children.ApplyResult()
    try:
        result = await kube_children.apply_children(kube, cluster, desired, observed)
        if features.configmap_key(cluster) in result.updated:
            await kube_children.nudge_worker_pods(
                kube, cluster, features.VERSION_ANNOTATION, features.version(cluster)
            )
        await act.carry_out(kube, probe, cluster, rollout)
        if worker_secrets.REGENERATE_ANNOTATION in cluster.metadata.annotations and not withheld:
            await kube_children.remove_annotation(kube, cluster, worker_secrets.REGENERATE_ANNOTATION)
    except ApiError as exc:
        logger.warning("applying children of %s/%s failed: %s", cluster.namespace, cluster.name, exc)
        return Applied(result, str(exc))
    return Applied(result)


def _fresh_secrets() -> children.FreshSecrets:
    return children.FreshSecrets(
        jwt=secrets.token_urlsafe(32),
        neo4j_password=secrets.token_urlsafe(24),
        api_key=secrets.token_urlsafe(32),
        redis_password=secrets.token_urlsafe(24),
    )


def _live_secrets(observed: Observed) -> dict[str, Any]:
    """Every Secret observed, by name: the generated children and the ones the spec names."""
    live: dict[str, Any] = dict(observed.referenced_secrets)
    live.update({key.name: body for key, body in observed.children.items() if key.kind == "Secret"})
    return live


def _withheld(cluster: ResonanceCluster, observed: Observed, fresh: children.FreshSecrets) -> list[str]:
    """Generated Secrets deleted while a live workload of the cluster reads them: not generated again
    (``desired/secrets.py``)."""
    workloads = [body for key, body in observed.children.items() if key.kind in {"Deployment", "StatefulSet"}]
    return worker_secrets.withheld(
        children.generated_secrets(cluster, fresh),
        _live_secrets(observed),
        in_use=worker_secrets.used_by(workloads),
        regenerate=worker_secrets.regenerate_requested(cluster.metadata.annotations),
    )


def _held_secrets_hash(cluster: ResonanceCluster, observed: Observed) -> str | None:
    """The digest the live workers run with: the rolling Deployment's, or the stable revision's."""
    stable = (cluster.status.get("rollout") or {}).get("stableRevision")
    names = [worker.name(cluster)] + ([revisions.deployment_name(cluster, str(stable))] if stable else [])
    for name in names:
        live = observed.child(ChildKey("apps/v1", "Deployment", name))
        template = (live or {}).get("spec", {}).get("template", {})
        held = template.get("metadata", {}).get("annotations", {}).get(worker_secrets.SECRETS_HASH_ANNOTATION)
        if held is not None:
            return str(held)
    return None


def _unserved_monitors(cluster: ResonanceCluster, apis: OptionalApis) -> list[str]:
    """The monitor kinds the spec asks for that the cluster does not serve (for the Monitoring condition)."""
    served = {"PodMonitor": apis.pod_monitor, "ServiceMonitor": apis.service_monitor}
    return [kind for kind in requested_monitors(cluster) if not served[kind]]


def _render(
    cluster: ResonanceCluster,
    observed: Observed,
    apis: OptionalApis,
    invalid: Sequence[str],
    applied: Applied,
    rollout: Pass | None,
    now: float,
    withheld: Sequence[str] = (),
) -> Render:
    """The new status as a pure function of the status it replaces (``kube/status.py`` may call it
    again after a conflict)."""
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    unserved = _unserved_monitors(cluster, apis)

    def render(previous: Mapping[str, Any]) -> dict[str, Any]:
        return compute.compute(
            cluster,
            observed,
            unserved=unserved,
            now=stamp,
            invalid=invalid,
            apply_error=applied.error,
            applied=applied.result.applied,
            rollout=None if rollout is None else rollout.view,
            previous=previous,
            withheld=withheld,
            keda_served=apis.keda,
        )

    return render


async def _post_events(
    kube: KubeClient,
    cluster: ResonanceCluster,
    written: StatusWrite,
    result: kube_children.ApplyResult,
    rollout: Pass | None,
    *,
    instance: str,
) -> int:
    notes = [(t.type, t.reason, t.message) for t in compute.transitions(written.previous, written.status)]
    notes += [] if rollout is None else list(rollout.notes)
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
    for key, replicas in result.handed_over:
        notes.append(
            (
                EventType.NORMAL,
                EventReason.AUTOSCALING_HANDOVER,
                f"{key} keeps its {replicas} replicas; its autoscaler owns the count from now on",
            )
        )
    for type_, reason, message in notes:
        try:
            await kube_children.post_event(kube, cluster, type_, reason, message, reporting_instance=instance)
        except ApiError as exc:  # an Event is a courtesy; never fail a reconcile over one
            logger.warning("could not post event %s on %s: %s", reason, cluster.name, exc)
    return len(notes)
