"""The thyroid of one worker: the pure :class:`~resonance_worker.domain.thyroid.Thyroid` fed with the
node's pain, its adaptations turned into limits and circuits, its state into metrics and events.

The node is built with this service as its :class:`~resonance_worker.living.pain.PainHooks` and
with its :attr:`ThyroidService.limits` as its limits provider: a pain signal re-evaluates the
thyroid, and the adaptation it returns scales :class:`~resonance_worker.living.limits.AdaptiveLimits`
(read by the node for each new connection and publish) and forces the ``redis`` and ``neo4j``
circuits open. A failed engine call hurts by Redis's health, not by how often it is retried
(:meth:`ThyroidService.engine_failed`, :meth:`ThyroidService.engine_answered`). Nothing of the node is
replaced. Shedding new connections is the transport's
middleware asking :meth:`ThyroidService.shed_retry_after`; a client this worker itself sent away to
come straight back (3010, 3011) is readmitted while it sheds (:mod:`resonance_worker.domain.readmission`),
by this worker or, through the tickets shared in the snapshots, by any other.

The cluster view: :meth:`ThyroidService.snapshot_entry` is what this worker shares (a presence
entry of :data:`PAIN_CHANNEL`), :meth:`ThyroidService.merge_peers` takes the others' back. The
engine round trip itself is the living core's (``living.core``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from resonance_worker.domain import events
from resonance_worker.domain.circuit import CircuitBreaker, CircuitState
from resonance_worker.domain.codes import Disconnect, Disconnects
from resonance_worker.domain.readmission import READMIT_CODES, Readmissions, Ticket
from resonance_worker.domain.thyroid import (
    Adaptations,
    DisconnectStormDetector,
    PainBudget,
    PainSnapshot,
    PainSource,
    Thyroid,
    ThyroidConfig,
    ThyroidState,
    ThyroidUpdate,
)
from resonance_worker.errors import EngineCircuitOpenError
from resonance_worker.living.limits import AdaptiveLimits, Limits
from resonance_worker.living.origin import PainOrigin, charged_to, current_origin
from resonance_worker.living.pain import PainHooks, pain_of_disconnect, pain_of_error
from resonance_worker.living.roster import Present
from resonance_worker.living_settings import LivingSettings

log = logging.getLogger("resonance.worker.living")

PAIN_CHANNEL = "__living:thyroid"
"""Internal channel whose presence entries carry each worker's pain snapshot and readmission tickets
(no client can name it)."""
CIRCUITS = ("redis", "neo4j")
"""The dependencies whose circuits the thyroid may force open."""


def thyroid_config(settings: LivingSettings) -> ThyroidConfig:
    return ThyroidConfig(
        threshold=settings.thyroid_threshold,
        half_life_s=settings.thyroid_half_life_seconds,
        min_dwell_s=settings.thyroid_min_dwell_seconds,
        overload_factor=settings.thyroid_overload_factor,
        identity_share=settings.thyroid_identity_share,
        flood_factor=settings.thyroid_flood_factor,
        circuit_only=frozenset(PainSource(name) for name in settings.thyroid_circuit_only_sources),
        # The thyroid's step is Redis's probe (its snapshot written and read): one failure per step counts.
        dependency_window_s=settings.thyroid_evaluate_seconds,
    )


class ThyroidService(PainHooks):
    """Pain in, adaptations out: the node's hooks and limits, the circuits, the thyroid's metrics."""

    def __init__(
        self,
        settings: LivingSettings,
        *,
        origin: str,
        present: Present,
        base_limits: Limits,
        record: Callable[[events.Event], None],
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.origin = origin
        self.present = present
        self.clock = clock
        self._record = record
        now = clock()
        self.core = Thyroid(thyroid_config(settings), origin=origin, now=now)
        self.storms = DisconnectStormDetector(
            settings.disconnect_storm_count, settings.disconnect_storm_window_seconds
        )
        self.circuits = {name: CircuitBreaker() for name in CIRCUITS}
        self.limits = AdaptiveLimits(base_limits)
        """What the node reads for new connections and publishes: scaled while the thyroid hurts."""
        self.readmissions = Readmissions()
        """Tickets of the addresses whose clients this worker sent away to reconnect (3010, 3011)."""
        self._last_published: tuple[Any, ...] | None = None
        self.pain_gauge = Gauge(
            "resonance_thyroid_pain", "Thyroid pain (this worker + peers).", registry=registry
        )
        self.state_gauge = Gauge(
            "resonance_thyroid_state", "1 for the thyroid's current state.", ["state"], registry=registry
        )
        self.circuit_gauge = Gauge(
            "resonance_circuit_open",
            "1 while a dependency's circuit is open.",
            ["dependency"],
            registry=registry,
        )
        self.refused_counter = Counter(
            "resonance_thyroid_pain_refused",
            "Pain not counted because its client, address or user had used up its budget.",
            registry=registry,
        )
        self.readmitted = Counter(
            "resonance_thyroid_readmitted",
            "Handshakes admitted while shedding: clients this worker sent away to reconnect (3010, 3011).",
            registry=registry,
        )
        self.cut_offs = Counter(
            "resonance_thyroid_cut_offs",
            "Connections disconnected (3509) because their errors flooded the thyroid.",
            registry=registry,
        )
        self.flooding_gauge = Gauge(
            "resonance_thyroid_flooding_identities",
            "Connections, addresses and users whose errors flood beyond their pain budget now.",
            registry=registry,
        )
        self._refused_reported = 0.0
        self.set_gauges(now)

    # -- what the rest of the worker reads ----------------------------------------------------

    @property
    def state(self) -> ThyroidState:
        return self.core.state

    @property
    def adaptations(self) -> Adaptations:
        return self.core.adaptations

    @property
    def budget(self) -> PainBudget:
        return self.core.budget

    def pain(self, now: float) -> float:
        return self.core.pain(now)

    def status(self, now: float) -> dict[str, Any]:
        """The body of ``GET /thyroid/status``, the ``thyroid.status`` RPC and ``system:thyroid``."""
        return self.core.status(now)

    def shed_retry_after(self, address: str | None = None) -> float | None:
        """Seconds a new connection (from ``address``) should wait, while the thyroid sheds them; None
        to admit it: not shedding, or a client of ``address`` was sent away to reconnect (its ticket)."""
        adaptations = self.core.adaptations
        if not adaptations.shed_new_connections:
            return None
        if address and self.readmissions.take(address, self.clock()):
            self.readmitted.inc()
            return None
        return adaptations.retry_after_s or 1.0

    # -- the node's pain hooks ---------------------------------------------------------------

    def feel(self, source: PainSource) -> None:
        origin = current_origin()
        identities = origin.identities(self.present) if origin is not None else ()
        update = self.core.feel(source, self.clock(), identities=identities)
        if update.flooding and origin is not None:
            self._cut_off(origin, update.flooding)
        self._after(update)

    def engine_failed(self, error: BaseException | None = None) -> None:
        """Engine pain by Redis's health, not the retry rate: nothing for a call refused by the open
        circuit, one signal per probe window at most (``DependencyWatch``)."""
        refused = isinstance(error, EngineCircuitOpenError)
        update = self.core.dependency_failed(PainSource.ENGINE_TIMEOUT, self.clock(), refused=refused)
        if update is not None:
            self._after(update)

    def engine_answered(self) -> None:
        """The probe reached Redis: after an outage, its pain is dropped (and shedding may stop)."""
        update = self.core.dependency_recovered(PainSource.ENGINE_TIMEOUT, self.clock())
        if update is not None:
            log.info("redis answers again: its pain is dropped", extra={"state": update.state.value})
            self._after(update)

    def error_reply(self, code: int) -> None:
        source = pain_of_error(code)
        if source is not None:
            self.feel(source)

    def disconnected(self, reason: Disconnect | None) -> None:
        source = pain_of_disconnect(reason)
        if source is not None:
            self.feel(source)
        if self.present.draining:
            return  # our own shutdown closes every connection: that is not a storm
        origin = current_origin()
        if reason is not None and reason.code in READMIT_CODES:
            # We asked this client to come straight back: not a storm, and not refused when it does.
            if origin is not None and origin.ip:
                self.readmissions.grant(origin.ip, self.clock())
            return
        if self.storms.record(self.clock(), origin.ip if origin is not None and origin.ip else None):
            with charged_to(None):  # a storm is the system's pain, not the last client's
                self.feel(PainSource.DISCONNECT_STORM)

    def _cut_off(self, origin: PainOrigin, flooding: frozenset[str]) -> None:
        """Disconnect a connection that floods (itself, or as its user): it, not everyone, pays.

        An address that floods is only capped: it may be a NAT or a proxy with innocent clients.
        """
        if origin.cut_off or not any(key.startswith(("conn:", "user:")) for key in flooding):
            return
        conn = origin.connection(self.present)
        if conn is None:
            return
        origin.cut_off = True
        log.warning(
            "client cut off: its errors flood the thyroid",
            extra={"client": conn.client_id, "user": conn.session.user, "ip": origin.ip},
        )
        self.cut_offs.inc()
        # Not from inside the session's own call that reported the pain: on the next loop turn.
        asyncio.get_running_loop().call_soon(conn.disconnect, Disconnects.TOO_MANY_ERRORS)

    # -- evaluation and the cluster view -----------------------------------------------------------

    def count_flooding(self, now: float) -> None:
        """Update the flooding-identities gauge (once per evaluation period: it walks the budget)."""
        self.flooding_gauge.set(len(self.core.budget.flooding(now)))

    def snapshot_entry(self, now: float) -> bytes:
        """This worker's pain, as the presence entry it shares in :data:`PAIN_CHANNEL`; with its unused
        readmission tickets (``tickets``: [address, expiry] pairs) when it holds any."""
        entry = self.core.snapshot(now).to_dict()
        tickets = self.readmissions.shared(now)
        if tickets:
            entry["tickets"] = tickets
        return orjson.dumps(entry)

    def merge_peers(self, entries: Iterable[tuple[str, bytes | None]] | None, now: float) -> None:
        """Re-evaluate with the other workers' entries (client id, JSON) of :data:`PAIN_CHANNEL`;
        ``None`` when they could not be read (this worker's own view then)."""
        if entries is None:
            self._after(self.core.evaluate(now))
            return
        peers = []
        tickets: dict[str, list[Ticket]] = {}
        for client, raw in entries:
            if client == self.origin or raw is None:
                continue
            try:
                entry = orjson.loads(raw)
                peers.append(PainSnapshot.from_dict(entry))
                tickets[client] = _tickets(entry.get("tickets", []))
            except (ValueError, AttributeError) as exc:  # orjson.JSONDecodeError is a ValueError
                log.warning("malformed peer pain snapshot", extra={"peer": client, "error": str(exc)})
        self.readmissions.set_peers(tickets, now)
        self._after(self.core.set_peers(peers, now))

    def status_to_publish(self, now: float) -> dict[str, Any] | None:
        """The status when its state, pain (to 0.01) or insights changed since the last one; else None."""
        status = self.core.status(now)
        key = (status["state"], round(status["pain"], 2), len(status["insights"]))
        if key == self._last_published:
            return None
        self._last_published = key
        return status

    def _after(self, update: ThyroidUpdate) -> None:
        """Apply an evaluation: adaptations now, events for the log, metrics."""
        now = self.clock()
        self._adapt(update.adaptations, now)
        if update.released is not None:
            log.warning("thyroid released", extra={"insight": update.released.summary})
            self._record(events.thyroid_released(self.origin, now, update.released.to_dict()))
        elif update.relaxed:
            log.info(
                "thyroid relaxed", extra={"state": update.state.value, "previous": update.previous.value}
            )
            self._record(
                events.thyroid_relaxed(
                    self.origin,
                    now,
                    state=update.state.value,
                    previous=update.previous.value,
                    pain=update.pain,
                )
            )
        self.set_gauges(now)

    def _adapt(self, adaptations: Adaptations, now: float) -> None:
        for name, breaker in self.circuits.items():
            if name in adaptations.open_circuits:
                breaker.force_open(now, self.settings.thyroid_evaluate_seconds * 2)
        # New connections get the tightened per-connection rate; publishes the tightened user rate.
        if self.limits.scale(adaptations.rate_limit_factor):
            log.info("rate limits scaled", extra={"factor": adaptations.rate_limit_factor})

    def set_gauges(self, now: float) -> None:
        self.pain_gauge.set(self.core.pain(now))
        for state in ThyroidState:
            self.state_gauge.labels(state=state.value).set(1 if self.core.state is state else 0)
        for name, breaker in self.circuits.items():
            self.circuit_gauge.labels(dependency=name).set(
                1 if breaker.state(now) is CircuitState.OPEN else 0
            )
        budget = self.core.budget
        self.refused_counter.inc(budget.refused - self._refused_reported)
        self._refused_reported = budget.refused


def _tickets(raw: object) -> list[Ticket]:
    """A peer's shared tickets: a list of [address, expiry]; ValueError on anything else."""
    if not isinstance(raw, list):
        raise ValueError("tickets must be a list")
    tickets = []
    for item in raw:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], int | float)
            and not isinstance(item[1], bool)
        ):
            raise ValueError("a ticket must be [address, expiry]")
        tickets.append((item[0], float(item[1])))
    return tickets
