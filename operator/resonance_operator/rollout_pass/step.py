"""The rollout pass's step (pure): one :class:`Observation` and the :class:`Memory` in, one :class:`Pass` out.

:func:`take` runs the step machine (``rollout.plan.decide``), takes an analysis
measurement when one is due (returning the new memory, never changing the old),
plans the topology of revisions and says what the status, the Events and
``act.carry_out`` need. ``now`` is passed in; nothing here reads a clock or talks
to anything. The caller must then:

- build and apply the children for ``Pass.topology`` (``Pass.live`` keeps the
  templates of revisions the spec no longer names);
- call ``act.carry_out`` with the :class:`Pass` once they are applied;
- put ``Pass.view`` in the status and post ``Pass.notes`` as Events;
- keep ``Pass.memory`` for this cluster's next pass, and look again after
  ``Pass.requeue_after`` seconds.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from resonance_operator.api.conditions import EventReason, EventType, ProgressingReason
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.api.spec import ResonanceCluster, RolloutStrategy
from resonance_operator.desired import meta, revisions, settings, worker
from resonance_operator.probe.targets import DrainReport, DrainRequest, PodTarget, drain_requests
from resonance_operator.rollout import analysis, plan
from resonance_operator.rollout.decision import ActionKind, Decision
from resonance_operator.rollout.decision import Observed as Seen
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


@dataclasses.dataclass(frozen=True)
class Memory:
    """Per cluster, kept by the caller between passes: the scrapes a measurement compares against."""

    baseline: tuple[Scrape, ...] = ()
    baseline_pair: tuple[str, str] | None = None
    missed: int = 0
    """Due measurements in a row that found no Pod of a revision scraped in both rounds."""


@dataclasses.dataclass(frozen=True)
class Observation:
    """Everything one pass decides on, gathered by ``observe.gather`` at one moment."""

    cluster: ResonanceCluster
    observed: Observed
    """The reconcile's observation: live children (the revision Deployments listed by label)."""
    state: RolloutState
    """``status.rollout`` as stored by the last pass."""
    targets: tuple[PodTarget, ...] = ()
    """Running worker Pods of any revision (listed only while a rollout is in flight)."""
    scrapes: tuple[Scrape, ...] = ()
    """``/metrics`` of the Pods of the stable, new and draining revisions, taken at ``now``."""
    drain_reports: tuple[DrainReport | None, ...] | None = None
    """Each Pod of the draining revision on its drain; ``None`` when no drain was due."""
    api_key: str | None = None
    """The workers' API key (from the generated Secret), for ``POST /drain``."""
    readings: tuple[tuple[analysis.Reading, ...], tuple[analysis.Reading, ...]] | None = None
    """(canary, stable) PromQL readings of the analysis in flight, when it has a Prometheus source."""
    secrets_hash: str | None = None
    """The digest of the Secrets the workers read (``desired/secrets.py``): part of the revision."""


@dataclasses.dataclass(frozen=True)
class Drains:
    """``POST /drain`` for each Pod of a revision that has just lost."""

    api_key: str
    orders: tuple[tuple[PodTarget, DrainRequest], ...]


@dataclasses.dataclass(frozen=True)
class Pass:
    """What one pass decided, for the reconciler, ``act.carry_out`` and the status."""

    decision: Decision
    view: RolloutView
    memory: Memory
    topology: revisions.Topology | None = None
    live: Mapping[str, Body] = dataclasses.field(default_factory=dict)
    notes: tuple[Note, ...] = ()
    remove_annotation: bool = False
    requeue_after: float | None = None
    drains: Drains | None = None


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


def api_key(observed: Observed, cluster: ResonanceCluster) -> str | None:
    secret = observed.child(ChildKey("v1", "Secret", settings.api_key_secret_name(cluster)))
    if secret is None:
        return None
    encoded = (secret.get("data") or {}).get(settings.API_KEY_KEY)
    return None if encoded is None else base64.b64decode(encoded).decode()


def _request(annotations: Mapping[str, str], notes: list[Note]) -> tuple[Request | None, bool]:
    """(the request in the annotation, whether an annotation is there at all)."""
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


def _connections(scrapes: Sequence[Scrape], revision: str | None) -> int | None:
    if revision is None:
        return None
    total = gauge_sum(scrapes, revision, CONNECTIONS)
    return None if total is None else int(total)


def _drained(observation: Observation, live: Mapping[str, Body]) -> bool:
    """Every Pod of the draining revision may leave (or the revision has no Deployment left)."""
    reports = observation.drain_reports
    if reports is None:
        return False
    everyone = all(report is not None and report.may_leave for report in reports)
    return everyone or observation.state.draining_revision not in live


def take(observation: Observation, memory: Memory, now: float) -> Pass:
    """Decide the next rollout action and gather what carrying it out needs."""
    cluster, state = observation.cluster, observation.state
    notes: list[Note] = []
    request, annotated = _request(cluster.metadata.annotations, notes)
    desired = worker.revision(cluster, secrets_hash=observation.secrets_hash)
    spec = cluster.spec.rollout
    if spec.strategy is RolloutStrategy.ROLLING:
        return _rolling(observation, memory, desired, request, annotated, notes, now)

    live = live_revisions(cluster, observation.observed)
    scrapes = observation.scrapes
    stable_connections = _connections(scrapes, state.stable_revision)
    before = revisions.plan_topology(
        cluster, state, live, stable_connections=stable_connections, secrets_hash=observation.secrets_hash
    )
    decision = plan.decide(
        spec,
        state,
        Seen(desired, before.settled, _drained(observation, live), request),
        now,
        pre_promotion_analysis=_pre_promotion(cluster),
    )
    new_state, requeue = decision.state, decision.requeue_after
    if decision.action in (ActionKind.START_ANALYSIS, ActionKind.MEASURE):
        new_state, requeue, memory = _analyse(decision, memory, scrapes, now, observation.readings)
        decision = dataclasses.replace(decision, state=new_state)

    topology = revisions.plan_topology(
        cluster, new_state, live, stable_connections=stable_connections, secrets_hash=observation.secrets_hash
    )
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
    deployments = [live.get(r) for r in (topology.stable, topology.canary) if r is not None]
    workers = readiness.revision_readiness(
        cluster,
        deployments,
        desired_revision=live.get(desired),
        settled=not decision.progressing and topology.settled,
    )
    view = RolloutView(
        _status(cluster, decision, connections, topology, revisions.traffic_weights(cluster, topology, live)),
        decision.progressing,
        decision.reason,
        decision.message,
        decision.degraded,
        workers,
    )
    return Pass(
        decision,
        view,
        memory,
        topology,
        live,
        tuple(notes),
        remove_annotation=annotated and (decision.request_handled or request is None),
        requeue_after=requeue,
        drains=_drains(observation, decision, now),
    )


def _drains(observation: Observation, decision: Decision, now: float) -> Drains | None:
    """A promotion or rollback whose drain starts now: ``POST /drain`` to every Pod of the loser.

    Sent after the children are applied, so no Service selects the losing revision any more.
    """
    state = decision.state
    due = state.draining_revision
    if due is None or now < (state.drain_not_before or now):
        return None
    if decision.action not in (ActionKind.PROMOTE, ActionKind.ROLL_BACK) or observation.api_key is None:
        return None
    losing = [target for target in observation.targets if target.revision == due]
    deadline = (state.drain_deadline or 0.0) - (state.drain_not_before or 0.0)
    options = observation.cluster.spec.rollout.drain
    orders = zip(losing, drain_requests(options, losing, deadline), strict=True)
    return Drains(observation.api_key, tuple(orders))


def _analyse(
    decision: Decision,
    memory: Memory,
    scrapes: Sequence[Scrape],
    now: float,
    readings: tuple[tuple[analysis.Reading, ...], tuple[analysis.Reading, ...]] | None = None,
) -> tuple[RolloutState, float | None, Memory]:
    """The state after a ``StartAnalysis`` / ``Measure`` action, when to look again, and the new memory."""
    state = decision.state
    assert decision.analysis is not None
    assert state.stable_revision is not None
    assert state.canary_revision is not None
    if decision.analysis.prometheus is not None:
        return _analyse_promql(decision, memory, now, readings)
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
        missed = memory.missed + 1 if measuring else 0
        return state, decision.requeue_after, Memory(tuple(scrapes), pair, missed)
    state = record(state, measurement, now)
    logger.info("analysis of %s: %s %s", state.canary_revision, measurement.phase, measurement.message)
    # The verdict may have changed: act on it at once.
    return state, 0.0, dataclasses.replace(memory, baseline=tuple(scrapes), missed=0)


def _analyse_promql(
    decision: Decision,
    memory: Memory,
    now: float,
    readings: tuple[tuple[analysis.Reading, ...], tuple[analysis.Reading, ...]] | None,
) -> tuple[RolloutState, float | None, Memory]:
    """The Prometheus source: each query covers its own window, so there is no baseline to keep; a
    run's first measurement is one interval after it starts (its window then holds the canary)."""
    state = decision.state
    assert decision.analysis is not None
    if decision.action is ActionKind.START_ANALYSIS:
        return state, decision.requeue_after, memory
    if readings is None:
        empty = tuple(None for _ in decision.analysis.metrics)
        measurement = analysis.measure_readings(decision.analysis, empty, empty)
    else:
        measurement = analysis.measure_readings(decision.analysis, *readings)
    state = record(state, measurement, now)
    logger.info(
        "analysis (PromQL) of %s: %s %s", state.canary_revision, measurement.phase, measurement.message
    )
    return state, 0.0, memory


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
    weights: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = decision.state.to_status()
    status.update(
        {
            "strategy": cluster.spec.rollout.strategy.value,
            "phase": decision.reason.value,
            "message": decision.message,
            "step": decision.step or None,
            "weights": dict(weights) if weights is not None else decision.weights,
            "connections": dict(connections) or None,
            "heldForConnections": (topology.held_for_connections or None) if topology else None,
        }
    )
    return status


def _rolling(
    observation: Observation,
    memory: Memory,
    desired: str,
    request: Request | None,
    annotated: bool,
    notes: list[Note],
    now: float,
) -> Pass:
    """Rolling: the Deployment rolls itself; the machine only records revisions for the status."""
    cluster = observation.cluster
    live = observation.observed.child(ChildKey("apps/v1", "Deployment", worker.name(cluster)))
    current = live is not None and meta.spec_hash(live) == meta.spec_hash(worker.deployment(cluster))
    ready = current and readiness.worker_readiness(cluster, live).ready_all
    decision = plan.decide(cluster.spec.rollout, observation.state, Seen(desired, ready, False, request), now)
    view = RolloutView(
        _status(cluster, decision, {}, None), decision.progressing, decision.reason, decision.message
    )
    requeue = decision.requeue_after if decision.reason is ProgressingReason.ROLLING_UPDATE else None
    return Pass(
        decision, view, memory, notes=tuple(notes), remove_annotation=annotated, requeue_after=requeue
    )
