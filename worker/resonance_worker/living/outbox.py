"""What the living core sends out: events to the event log, publications to channels.

Both report a failure of their store as pain (``engine_timeout``) through ``on_failure`` and
carry on: the living core never stops serving because Redis or the log is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from resonance_worker.domain import events
from resonance_worker.domain.backoff import Backoff
from resonance_worker.domain.channels import ChannelRules
from resonance_worker.engines.base import Engine, history_options
from resonance_worker.errors import EngineError
from resonance_worker.eventlog import EventLog, EventLogError
from resonance_worker.tracing import TRACER, context_of, current_traceparent
from resonance_worker.tracing import enabled as tracing_enabled

log = logging.getLogger("resonance.worker.living")


JOURNAL_RETRY = Backoff(first_s=0.1, cap_s=2.0)
"""The journal's wait between attempts while the log is away: a returning Redis is used within ~2 s."""


def _same_trace(trace: str | None) -> Callable[[tuple[events.Event, str | None]], bool]:
    return lambda held: held[1] == trace


class Journal:
    """Appends events to the log in the order they were raised, off the caller's path (the pain hooks
    that raise them are synchronous).

    One flusher task appends what is buffered, oldest first, up to ``batch`` events per
    ``append_many`` (one script call on Redis). While the log is away (a Redis outage, a failover)
    the events wait in a bounded in-memory buffer of ``capacity`` events and the flusher retries
    with jittered backoff (``domain.backoff``); when the log is back they are appended in the order
    they were raised. A batch whose answer was lost (a timeout) is appended again: the log may then
    hold an event twice, which the projector applies once (deterministic event ids).

    The bound: a full buffer refuses the *new* event (counted in ``dropped``, logged, pain), so what
    is kept stays an unbroken, ordered prefix of what was raised. At the default 10,000 events and
    the ~1 KiB an event takes, the buffer holds ~10 MiB; a worker that dies loses what it held.
    ``on_failure`` is called once per failed attempt (pain); ``buffered`` is the current depth.
    """

    def __init__(
        self,
        event_log: EventLog,
        on_failure: Callable[[], None],
        *,
        capacity: int = 10_000,
        batch: int = 500,
        retry: Backoff = JOURNAL_RETRY,
    ) -> None:
        if capacity < 1 or batch < 1:
            raise ValueError("capacity and batch must be positive")
        self.event_log = event_log
        self._on_failure = on_failure
        self.capacity = capacity
        self.batch = batch
        self._retry = retry
        self._buffer: deque[tuple[events.Event, str | None]] = deque()
        """Events not appended yet, each with the ``traceparent`` it was raised under (None: untraced)."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flusher: asyncio.Task[None] | None = None
        self.dropped = 0
        """Events refused because the buffer was full, since start."""
        self.appended = 0
        """Events appended, since start."""

    @property
    def buffered(self) -> int:
        """Events raised and not yet appended."""
        return len(self._buffer)

    def append(self, event: events.Event) -> None:
        """Buffer ``event`` for the flusher (needs a running event loop)."""
        if len(self._buffer) >= self.capacity:
            self.dropped += 1
            self._on_failure()
            log.warning(
                "event dropped: the journal is full",
                extra={"event": event.type.value, "capacity": self.capacity, "dropped": self.dropped},
            )
            return
        # The caller's trace, taken now: the flusher runs in a context of its own.
        self._buffer.append((event, current_traceparent() if tracing_enabled() else None))
        self._idle.clear()
        self._wake.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_forever())

    async def settle(self) -> None:
        """Wait until every event handed over so far is appended (while the log is away, that waits)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop the flusher (what is still buffered is lost with this process: logged)."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        if self._buffer:
            log.warning("journal closed with events not appended", extra={"buffered": len(self._buffer)})

    async def _flush_forever(self) -> None:
        attempt = 0
        while True:
            if not self._buffer:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            # The leading run raised under one trace (all of them, untraced): one append, in order.
            trace = self._buffer[0][1]
            batch = list(itertools.islice(itertools.takewhile(_same_trace(trace), self._buffer), self.batch))
            try:
                await self._append(batch, trace)
            except EventLogError as exc:
                self._on_failure()
                log.warning(
                    "events not appended yet; retrying",
                    extra={"buffered": len(self._buffer), "attempt": attempt, "error": str(exc)},
                )
                await asyncio.sleep(self._retry.delay(attempt, random.uniform))
                attempt += 1
                continue
            attempt = 0
            # Only this task takes from the head, so the batch is still there.
            for _ in batch:
                self._buffer.popleft()
            self.appended += len(batch)

    async def _append(self, batch: list[tuple[events.Event, str | None]], trace: str | None) -> None:
        """One ``append_many``; traced, a span in the trace the events were raised under (their
        ``traceparent`` is kept beside them in the log, so the projection continues that trace)."""
        held = [event for event, _ in batch]
        if not tracing_enabled():
            await self.event_log.append_many(held, trace=trace)
            return
        attributes = {"resonance.event": held[0].type.value, "resonance.events": len(held)}
        with TRACER.start_as_current_span(
            "eventlog.append", context=context_of(trace), attributes=attributes
        ):
            await self.event_log.append_many(held, trace=current_traceparent())


class Publisher:
    """Publishes JSON on channels through the engine, kept in history as the channel's namespace says."""

    def __init__(self, engine: Engine, rules: ChannelRules, on_failure: Callable[[], None]) -> None:
        self.engine = engine
        self.rules = rules
        self._on_failure = on_failure

    async def publish(self, channel: str, payload: Mapping[str, Any], *, history: bool = True) -> None:
        options = self.rules.options(channel)
        try:
            await self.engine.publish(
                channel,
                orjson.dumps(payload),
                history=history_options(options) if history and options is not None else None,
            )
        except EngineError as exc:
            log.warning("living publication failed", extra={"channel": channel, "error": str(exc)})
            self._on_failure()
