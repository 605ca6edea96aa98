"""The projector: reads the event log through its consumer group and writes Neo4j.

One loop (``run``, an asyncio task) repeats :meth:`Projector.step`:

1. take a batch — entries idle on a dead consumer first (``claim_stale``, every
   ``claim_interval_s``), else new ones (``read_new``, blocking up to ``block_ms``);
2. write the whole batch in ONE Neo4j transaction (one statement per event, see
   ``graph.projection``; each is idempotent on the event id);
3. acknowledge the batch only after the commit.

When Neo4j (or Redis) fails, the batch stays in hand, unacknowledged; the loop
backs off exponentially with jitter (``domain.backoff``) and a circuit breaker
(``domain.circuit``) stops hammering a dead server. When it returns, the same batch
is written again and the backlog follows: nothing lost (nothing is acked before
its commit), nothing duplicated (a commit whose ack was lost is skipped by the
``Event`` guard when the entries come back). A projector that dies holding a
batch leaves it pending in the group; another (or the next) projector claims it
after ``claim_idle_ms``.

Entries that are not valid events, or whose payload cannot be projected, are
acknowledged and counted as ``poison`` (logged with their log id): retrying
them can never succeed. Neo4j errors are never treated as poison, even client
errors — they may be a bug or misconfiguration, and dropping events would hide it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import neo4j
from opentelemetry.trace import StatusCode

from resonance_worker.domain.backoff import Backoff
from resonance_worker.domain.circuit import CircuitBreaker, CircuitState
from resonance_worker.domain.events import kept_out_of_graph
from resonance_worker.eventlog.base import EventLog, EventLogError, LogEntry, LogLag
from resonance_worker.graph.errors import GraphError
from resonance_worker.graph.projection import Plan, ProjectionInputError, plan
from resonance_worker.graph.schema import ensure_schema
from resonance_worker.tracing import TRACER, context_of
from resonance_worker.tracing import enabled as tracing_enabled

T = TypeVar("T")
_TRANSIENT_RETRIES = 4
_IDLE_POLL_S = 0.05

logger = logging.getLogger("resonance.worker.projector")


@dataclass(frozen=True, slots=True)
class ProjectorConfig:
    batch_size: int = 200
    block_ms: int = 1000
    """How long one read waits for new events."""
    claim_idle_ms: int = 30_000
    """A pending entry idle this long belongs to a dead consumer and is claimed."""
    claim_interval_s: float = 5.0
    transaction_timeout_s: float = 15.0
    backoff_base_s: float = 0.2
    backoff_max_s: float = 10.0
    breaker_failures: int = 3
    """Consecutive failures that open the circuit to Neo4j."""
    breaker_reset_s: float = 5.0
    database: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError("batch_size must be in 1..10000")
        if self.block_ms < 0 or self.claim_idle_ms < 0:
            raise ValueError("block_ms and claim_idle_ms must be ≥ 0")
        for name in ("claim_interval_s", "transaction_timeout_s", "backoff_base_s", "breaker_reset_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s cannot be below backoff_base_s")


@dataclass
class ProjectorStats:
    """Plain counters a worker exports as metrics (``resonance_projector_*``)."""

    projected: int = 0
    """Events written to the graph for the first time."""
    duplicates: int = 0
    """Events already in the graph (re-delivered, replayed): skipped."""
    poison: int = 0
    """Entries that could not be projected, acknowledged and dropped."""
    trimmed: int = 0
    """Pending entries retention removed before they were projected (lost: retention too short)."""
    claimed: int = 0
    """Entries taken over from dead consumers."""
    failures: int = 0
    """Failed attempts (Neo4j or Redis); the batch is retried."""
    batches: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    recent_problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "projected": self.projected,
            "duplicates": self.duplicates,
            "poison": self.poison,
            "trimmed": self.trimmed,
            "claimed": self.claimed,
            "failures": self.failures,
            "batches": self.batches,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
        }


class Projector:
    """Projects the event log into Neo4j. ``consumer`` must be unique per running projector."""

    def __init__(
        self,
        log: EventLog,
        driver: neo4j.AsyncDriver,
        *,
        consumer: str,
        config: ProjectorConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.log = log
        self.driver = driver
        self.consumer = consumer
        self.config = config or ProjectorConfig()
        self.stats = ProjectorStats()
        self._clock = clock
        self._rng = rng or random.Random()
        self._backoff = Backoff(first_s=self.config.backoff_base_s, cap_s=self.config.backoff_max_s)
        self.breaker = CircuitBreaker(
            failure_threshold=self.config.breaker_failures, reset_timeout_s=self.config.breaker_reset_s
        )
        self._in_hand: list[LogEntry] = []
        self._plans_in_hand: list[Plan] = []
        self._written = False
        self._next_claim = 0.0
        self._schema_ready = False
        self._stopping = False

    @property
    def failures(self) -> int:
        """Failed attempts since start (``stats.failures``)."""
        return self.stats.failures

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Project until :meth:`stop` (or cancellation). Never returns on a failure: it backs off."""
        self._stopping = False
        while not self._stopping:
            try:
                settled = await self.step()
                if settled == 0:
                    # Nothing to do. A non-blocking read (block_ms=0) may not suspend at all: poll
                    # gently instead of spinning, and always let other tasks run.
                    await asyncio.sleep(0 if self.config.block_ms else _IDLE_POLL_S)
            except (GraphError, EventLogError) as exc:
                await asyncio.sleep(self._failed(exc))
            except Exception as exc:
                # A bug must not silently end the projection: log it with its traceback, count it,
                # back off and try again (the batch is still in hand, unacknowledged).
                logger.exception("projector step failed unexpectedly")
                await asyncio.sleep(self._failed(exc))

    def stop(self) -> None:
        """Finish the current step and return from :meth:`run` (a cancel does the same, abruptly)."""
        self._stopping = True

    async def step(self) -> int:
        """One round: take a batch (unless one is in hand), write it, acknowledge it.

        Returns how many entries were settled (projected, skipped or dropped); raises
        :class:`GraphError` / :class:`EventLogError` when a store failed (the batch stays in hand).
        """
        now = self._clock()
        if not self.breaker.allow(now):
            await asyncio.sleep(
                self.breaker.retry_after(now) + self._rng.uniform(0, self.config.backoff_base_s)
            )
            return 0
        try:
            settled = await self._step()
        except (GraphError, EventLogError):
            self.breaker.record_failure(self._clock())
            raise
        self.breaker.record_success(self._clock())
        self.stats.consecutive_failures = 0
        return settled

    async def _step(self) -> int:
        if not self._in_hand:
            self._in_hand = await self._take()
            # Poison is counted once, here; a retried batch reuses its plans.
            self._plans_in_hand = self._plans(self._in_hand)
        if not self._in_hand:
            return 0
        entries, plans = self._in_hand, self._plans_in_hand
        if not self._written and plans and not self._schema_ready:
            await self._graph("schema", ensure_schema(self.driver, database=self.config.database))
            self._schema_ready = True
        if not self._written:
            # Counted once, at the commit; a failed ack then retries only the ack.
            applied = await self._write_traced(entries, plans) if plans else 0
            self._written = True
            self.stats.batches += 1
            self.stats.projected += applied
            self.stats.duplicates += len(plans) - applied
        await self.log.ack([entry.log_id for entry in entries])
        self._in_hand = []
        self._written = False
        return len(entries)

    def _plans(self, entries: list[LogEntry]) -> list[Plan]:
        plans: list[tuple[str, Plan]] = []
        for entry in entries:
            problem = entry.problem
            if entry.event is not None and kept_out_of_graph(entry.event):
                continue  # no consent to the graph: acknowledged, never written
            if entry.event is not None:
                try:
                    plans.append((entry.event.subject, plan(entry.event)))
                except ProjectionInputError as exc:
                    problem = f"event {entry.event.id} ({entry.event.type.value}) cannot be projected: {exc}"
            if problem is not None:
                self._poisoned(entry.log_id, problem)
        # One lock order (by subject) across concurrent projectors makes deadlocks rarer; the order
        # inside a batch does not matter, since states are inserted by time, not by arrival.
        plans.sort(key=lambda item: item[0])
        return [item for _, item in plans]

    async def _take(self) -> list[LogEntry]:
        now = self._clock()
        if now >= self._next_claim:
            self._next_claim = now + self.config.claim_interval_s
            claim = await self.log.claim_stale(
                self.consumer, self.config.claim_idle_ms, self.config.batch_size
            )
            if claim.trimmed:
                self.stats.trimmed += len(claim.trimmed)
                logger.error(
                    "event log entries trimmed before projection (retention shorter than the outage)",
                    extra={"count": len(claim.trimmed), "first": claim.trimmed[0]},
                )
            if claim.entries:
                self.stats.claimed += len(claim.entries)
                # More may be waiting: claim again on the next round.
                self._next_claim = now
                return claim.entries
        return await self.log.read_new(self.consumer, self.config.batch_size, self.config.block_ms)

    async def _write_traced(self, entries: list[LogEntry], plans: list[Plan]) -> int:
        """:meth:`_write`; traced, each event appended under a trace gets a ``graph.project`` span in
        that trace, from the start of the batch's transaction to its commit (or failure)."""
        if not tracing_enabled():
            return await self._write(plans)
        spans = [
            TRACER.start_span(
                "graph.project",
                context=parent,
                attributes={
                    "resonance.event": entry.event.type.value,
                    "resonance.event_id": entry.event.id,
                    "resonance.batch": len(entries),
                    "db.system": "neo4j",
                },
            )
            for entry in entries
            if entry.event is not None and (parent := context_of(entry.trace)) is not None
        ]
        try:
            return await self._write(plans)
        except Exception as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, str(exc))
            raise
        finally:
            for span in spans:
                span.end()

    async def _write(self, plans: list[Plan]) -> int:
        async def transaction() -> int:
            async with self.driver.session(database=self.config.database) as session:
                tx = await session.begin_transaction(timeout=self.config.transaction_timeout_s)
                try:
                    applied = 0
                    for item in plans:
                        result = await tx.run(item.statement, item.parameters)
                        record = await result.single(strict=True)
                        applied += int(record["applied"])
                    await tx.commit()
                    return applied
                finally:
                    await tx.close()

        for attempt in range(_TRANSIENT_RETRIES):
            try:
                return await self._graph("write", transaction())
            except GraphError as exc:
                # Deadlocks between concurrent projectors are transient: retry at once, a few times,
                # before counting a failure (and backing off as if Neo4j were down).
                if attempt == _TRANSIENT_RETRIES - 1 or not isinstance(
                    exc.__cause__, neo4j.exceptions.TransientError
                ):
                    raise
                await asyncio.sleep(self._rng.uniform(0, self.config.backoff_base_s))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _graph(self, what: str, call: Awaitable[T]) -> T:
        # A little more than the server-side transaction timeout: the client gives up on a dead socket.
        deadline = self.config.transaction_timeout_s + 5.0
        try:
            async with asyncio.timeout(deadline):
                return await call
        except TimeoutError as exc:
            raise GraphError(f"neo4j {what} timed out after {deadline:g} s") from exc
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as exc:
            raise GraphError(f"neo4j {what} failed: {type(exc).__name__}: {exc}") from exc

    def _poisoned(self, log_id: str, problem: str) -> None:
        self.stats.poison += 1
        self.stats.recent_problems = [*self.stats.recent_problems[-9:], f"{log_id}: {problem}"]
        logger.warning(
            "dropping an event log entry that cannot be projected",
            extra={"log_id": log_id, "problem": problem},
        )

    def _failed(self, exc: Exception) -> float:
        """Count a failure; the delay before the next try: exponential, full jitter in [½, 1]."""
        self.stats.failures += 1
        self.stats.consecutive_failures += 1
        self.stats.last_error = str(exc)
        attempt = self.stats.consecutive_failures - 1
        ceiling = self._backoff.ceiling(attempt)
        logger.warning(
            "projector failed; retrying", extra={"error": str(exc), "retry_in_s": round(ceiling, 3)}
        )
        return self._backoff.delay(attempt, self._rng.uniform)

    # ------------------------------------------------------------------ helpers

    async def lag(self) -> LogLag:
        """The group's backlog (the lag metric)."""
        return await self.log.lag()

    async def drain(self, *, max_rounds: int = 100_000) -> int:
        """Step until the log has nothing new and nothing in hand; return entries settled.

        Raises on the first failure (for tests and one-off catch-ups; ``run`` is the
        resilient loop)."""
        total = 0
        for _ in range(max_rounds):
            settled = await self.step()
            total += settled
            # An open circuit also settles nothing: that is waiting, not being drained.
            if (
                settled == 0
                and not self._in_hand
                and self.breaker.state(self._clock()) is CircuitState.CLOSED
            ):
                return total
        raise RuntimeError(f"projector did not drain within {max_rounds} rounds")

    @property
    def in_hand(self) -> int:
        """Entries read but not yet acknowledged by this projector."""
        return len(self._in_hand)
