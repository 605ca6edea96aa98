"""One pass of the rollout machine for one cluster, with its I/O.

observe revisions and Pods → scrape / drain status → ``plan.decide`` → measure →
topology. The reconciler calls :func:`run` before it applies children (the
topology decides which worker children exist) and :func:`finish` after (start
drains once no Service selects the losing revision, drop a handled annotation).

The machine's state lives in ``status.rollout``; only the baseline scrape of a
running analysis is kept in memory (:class:`Memory`). After an operator restart
the first due measurement only takes a new baseline.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import zlib
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import pydantic

from resonance_operator.api.conditions import EventReason, EventType, ProgressingReason
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.api.spec import ResonanceCluster, RolloutStrategy
from resonance_operator.desired import meta, revisions, settings, worker
from resonance_operator.kube import children as kube_children
from resonance_operator.kube.client import KubeClient
from resonance_operator.probe.pods import DrainReport, DrainRequest, PodProbe, PodTarget, pod_targets
from resonance_operator.rollout import analysis, exposition, plan
from resonance_operator.rollout.decision import ActionKind, Decision
from resonance_operator.rollout.decision import Observed as PlanObserved
from resonance_operator.rollout.request import ACTION_ANNOTATION, Request, UnknownRequestError, parse_request
from resonance_operator.rollout.scrapes import CONNECTIONS, Scrape, gauge_sum
from resonance_operator.rollout.state import RolloutState, record
from resonance_operator.status import readiness
from resonance_operator.status.facts import RolloutView

logger = logging.getLogger("resonance.operator.rollout")

Body = Mapping[str, Any]
Note = tuple[EventType, EventReason, str]
SETTLE_POLL_SECONDS = 5.0
MISSED_MEASUREMENTS = 3
"""Due measurements without comparable scrapes before one counts as Inconclusive."""


@dataclasses.dataclass
class Memory:
    """Per cluster, in memory: the scrapes an analysis measurement compares against."""

    baseline: list[Scrape] = dataclasses.field(default_factory=list)
    baseline_pair: tuple[str, str] | None = None
    missed: int = 0
    """Due measurements in a row that found no Pod of a revision scraped in both rounds."""


Memories = MutableMapping[tuple[str, str], Memory]


@dataclasses.dataclass
class Pass:
    """What one pass decided, for the reconciler and the status."""

    decision: Decision
    view: RolloutView
    topology: revisions.Topology | None = None
    live: dict[str, Body] = dataclasses.field(default_factory=dict)
    notes: list[Note] = dataclasses.field(default_factory=list)
    remove_annotation: bool = False
    requeue_after: float | None = None
    drain_due: str | None = None
    targets: list[PodTarget] = dataclasses.field(default_factory=list)


def live_revisions(cluster: ResonanceCluster, observed: Observed) -> dict[str, Body]:
    """Live revision Deployments (listed by label into ``observed``), by revision."""
    found: dict[str, Body] = {}
    for key, body in observed.children.items():
        if key.kind != "Deployment" or body is None:
            continue
        revision = revisions.revision_of(body)
        if revision is not None and key.name == revisions.deployment_name(cluster, revision):
            found[revision] = body
    return found


def _request(cluster_body: Body, notes: list[Note]) -> tuple[Request | None, bool]:
    """(the request in the annotation, whether an annotation is there at all)."""
    annotations = cluster_body.get("metadata", {}).get("annotations") or {}
    present = ACTION_ANNOTATION in annotations
    try:
        return parse_request(annotations), present
    except UnknownRequestError as error:
        notes.append((EventType.WARNING, EventReason.INVALID_ROLLOUT_ACTION, str(error)))
        return None, present


def _pre_promotion(cluster: ResonanceCluster) -> analysis.AnalysisSpec | None:
    options = cluster.spec.rollout.blue_green
    raw = options.pre_promotion_analysis if options else None
    if raw is None:
        return None
    try:
        return analysis.AnalysisSpec.model_validate(raw)
    except pydantic.ValidationError:
        return None  # reported by validation (InvalidSpec) before any pass runs


def _scrapes(pairs: Sequence[tuple[PodTarget, str]], now: float) -> list[Scrape]:
    scrapes = []
    for target, text in pairs:
        try:
            samples = exposition.parse_exposition(text)
        except exposition.ExpositionError as error:
            logger.warning("metrics of pod %s: %s", target.name, error)
            continue
        scrapes.append(Scrape(target.name, target.revision, now, samples))
    return scrapes


def _connections(scrapes: Sequence[Scrape], revision: str | None) -> int | None:
    if revision is None:
        return None
    total = gauge_sum(scrapes, revision, CONNECTIONS)
    return None if total is None else int(total)


def api_key(observed: Observed, cluster: ResonanceCluster) -> str | None:
    secret = observed.child(ChildKey("v1", "Secret", settings.api_key_secret_name(cluster)))
    if secret is None:
        return None
    encoded = (secret.get("data") or {}).get(settings.API_KEY_KEY)
    return None if encoded is None else base64.b64decode(encoded).decode()


async def drain(
    probe: PodProbe,
    cluster: ResonanceCluster,
    targets: Sequence[PodTarget],
    key: str | None,
    deadline_seconds: float,
) -> list[DrainReport | None]:
    """``POST /drain`` to each Pod of a losing revision (idempotent: also reads its progress)."""
    if key is None:
        return [None for _ in targets]
    options = cluster.spec.rollout.drain
    reports = []
    for index, target in enumerate(targets):
        request = DrainRequest(
            budget_per_second=options.reconnects_per_second,
            pods=len(targets),
            pod_index=index,
            window_seconds=options.window_seconds,
            remaining_threshold=options.remaining_threshold,
            # The worker wants a positive deadline; past ours the machine scales the Pods down anyway.
            deadline_seconds=max(1.0, deadline_seconds),
            seed=zlib.crc32(target.name.encode()),
        )
        reports.append(await probe.start_drain(target, key, request))
    return reports


async def run(
    kube: KubeClient,
    probe: PodProbe,
    cluster: ResonanceCluster,
    cluster_body: Body,
    observed: Observed,
    memory: Memory,
    now: float,
) -> Pass:
    """Decide the next rollout action and gather what the decision needs."""
    notes: list[Note] = []
    request, annotated = _request(cluster_body, notes)
    state = RolloutState.from_status(cluster.status.get("rollout"))
    desired = worker.revision(cluster)
    spec = cluster.spec.rollout
    if spec.strategy is RolloutStrategy.ROLLING:
        return _rolling(cluster, observed, state, desired, request, annotated, notes, now)

    live = live_revisions(cluster, observed)
    in_flight = state.canary_revision is not None or state.draining_revision is not None
    targets: list[PodTarget] = []
    scrapes: list[Scrape] = []
    if in_flight:
        pods = await kube_children.list_worker_pods(kube, cluster)
        targets = pod_targets(pods, meta.REVISION_LABEL, worker.HTTP_PORT_NAME)
        wanted = {state.stable_revision, state.canary_revision, state.draining_revision}
        scrapes = _scrapes(
            await probe.scrape_all([t for t in targets if t.revision in wanted], spec.metrics_path), now
        )
    stable_connections = _connections(scrapes, state.stable_revision)
    before = revisions.plan_topology(cluster, state, live, stable_connections=stable_connections)

    previous_drained = False
    key = api_key(observed, cluster)
    draining = state.draining_revision
    if draining is not None and now >= (state.drain_not_before or now):
        losing = [t for t in targets if t.revision == draining]
        reports = await drain(probe, cluster, losing, key, (state.drain_deadline or now) - now)
        previous_drained = all(r is not None and r.may_leave for r in reports)
        if draining not in live:
            previous_drained = True

    decision = plan.decide(
        spec,
        state,
        PlanObserved(desired, before.settled, previous_drained, request),
        now,
        pre_promotion_analysis=_pre_promotion(cluster),
    )
    new_state, requeue = decision.state, decision.requeue_after
    if decision.action in (ActionKind.START_ANALYSIS, ActionKind.MEASURE):
        new_state, requeue = _analyse(decision, memory, scrapes, now)
        decision = dataclasses.replace(decision, state=new_state)

    topology = revisions.plan_topology(cluster, new_state, live, stable_connections=stable_connections)
    if not topology.settled and requeue is None:
        requeue = SETTLE_POLL_SECONDS
    if decision.event is not None:
        notes.append((decision.event.type, EventReason(decision.event.reason), decision.event.message))
    if new_state.canary_revision is not None and new_state.canary_revision != state.canary_revision:
        notes.append(
            (
                EventType.NORMAL,
                EventReason.ROLLOUT_STARTED,
                f"{spec.strategy.value} rollout of {new_state.canary_revision} started "
                f"(stable {new_state.stable_revision})",
            )
        )
    connections = {
        role: count
        for role, revision in (
            ("stable", new_state.stable_revision),
            ("canary", new_state.canary_revision),
            ("draining", new_state.draining_revision),
        )
        if (count := _connections(scrapes, revision)) is not None
    }
    status = _status(cluster, decision, connections, topology)
    deployments = [live.get(r) for r in (topology.stable, topology.canary) if r is not None]
    workers = readiness.revision_readiness(
        cluster,
        deployments,
        desired_revision=live.get(desired),
        settled=not decision.progressing and topology.settled,
    )
    view = RolloutView(
        status, decision.progressing, decision.reason, decision.message, decision.degraded, workers
    )
    due = new_state.draining_revision
    if due is not None and now < (new_state.drain_not_before or now):
        due = None
    return Pass(
        decision,
        view,
        topology,
        live,
        notes,
        remove_annotation=annotated and (decision.request_handled or request is None),
        requeue_after=requeue,
        drain_due=due if decision.action in (ActionKind.PROMOTE, ActionKind.ROLL_BACK) else None,
        targets=targets,
    )


def _analyse(
    decision: Decision, memory: Memory, scrapes: list[Scrape], now: float
) -> tuple[RolloutState, float | None]:
    state = decision.state
    assert decision.analysis is not None
    assert state.stable_revision is not None
    assert state.canary_revision is not None
    pair = (state.stable_revision, state.canary_revision)
    measuring = decision.action is ActionKind.MEASURE and memory.baseline_pair == pair
    if measuring and _comparable(memory.baseline, scrapes, pair):
        measurement = analysis.measure(
            decision.analysis,
            memory.baseline,
            scrapes,
            canary_revision=state.canary_revision,
            stable_revision=state.stable_revision,
        )
    elif measuring and memory.missed + 1 >= MISSED_MEASUREMENTS:
        # Pods that never answer /metrics must not keep the rollout waiting for ever: inconclusive.
        why = f"no Pod of {state.stable_revision} and {state.canary_revision} answered /metrics twice"
        results = tuple(
            analysis.MetricResult(check.kind, analysis.Phase.INCONCLUSIVE, None, None, why)
            for check in decision.analysis.metrics
        )
        measurement = analysis.Measurement(analysis.Phase.INCONCLUSIVE, results)
    else:
        # The first scrape of a run, the first after an operator restart (which lost the baseline), or
        # one that cannot be compared with the last: a new baseline, measured one interval later.
        memory.missed = memory.missed + 1 if measuring else 0
        memory.baseline, memory.baseline_pair = list(scrapes), pair
        return state, decision.requeue_after
    state = record(state, measurement, now)
    logger.info("analysis of %s: %s %s", state.canary_revision, measurement.phase, measurement.message)
    memory.baseline, memory.missed = list(scrapes), 0
    # The verdict may have changed: act on it at once.
    return state, 0.0


def _comparable(before: Sequence[Scrape], after: Sequence[Scrape], revisions_: tuple[str, str]) -> bool:
    """Both revisions have a Pod scraped in both rounds (a Pod that was not answering yet at the
    baseline, or restarted since, would measure as no traffic at all)."""
    for revision in revisions_:
        earlier = {s.pod for s in before if s.revision == revision}
        if not earlier & {s.pod for s in after if s.revision == revision}:
            return False
    return True


def _status(
    cluster: ResonanceCluster,
    decision: Decision,
    connections: Mapping[str, int],
    topology: revisions.Topology | None,
) -> dict[str, Any]:
    status: dict[str, Any] = decision.state.to_status()
    status.update(
        {
            "strategy": cluster.spec.rollout.strategy.value,
            "phase": decision.reason.value,
            "message": decision.message,
            "step": decision.step or None,
            "weights": decision.weights,
            "connections": dict(connections) or None,
            "heldForConnections": (topology.held_for_connections or None) if topology else None,
        }
    )
    return status


def _rolling(
    cluster: ResonanceCluster,
    observed: Observed,
    state: RolloutState,
    desired: str,
    request: Request | None,
    annotated: bool,
    notes: list[Note],
    now: float,
) -> Pass:
    """Rolling: the Deployment rolls itself; the machine only records revisions for the status."""
    live = observed.child(ChildKey("apps/v1", "Deployment", worker.name(cluster)))
    current = live is not None and meta.spec_hash(live) == meta.spec_hash(worker.deployment(cluster))
    ready = current and readiness.worker_readiness(cluster, live).ready_all
    decision = plan.decide(cluster.spec.rollout, state, PlanObserved(desired, ready, False, request), now)
    view = RolloutView(
        _status(cluster, decision, {}, None), decision.progressing, decision.reason, decision.message
    )
    requeue = decision.requeue_after if decision.reason is ProgressingReason.ROLLING_UPDATE else None
    return Pass(
        decision,
        view,
        notes=notes,
        remove_annotation=annotated,
        requeue_after=requeue,
    )


async def finish(
    kube: KubeClient, probe: PodProbe, cluster: ResonanceCluster, observed: Observed, done: Pass
) -> None:
    """After the children are applied: start the drain a promotion or rollback began, drop the annotation."""
    if done.drain_due is not None:
        state = done.decision.state
        losing = [t for t in done.targets if t.revision == done.drain_due]
        deadline = (state.drain_deadline or 0.0) - (state.drain_not_before or 0.0)
        await drain(probe, cluster, losing, api_key(observed, cluster), deadline)
    if done.remove_annotation:
        await kube_children.remove_annotation(kube, cluster, ACTION_ANNOTATION)
