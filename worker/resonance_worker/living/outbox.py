"""What the living core sends out: events to the event log, publications to channels.

Both report a failure of their store as pain (``engine_timeout``) through ``on_failure`` and
carry on: the living core never stops serving because Redis or the log is away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from resonance_worker.domain import events
from resonance_worker.domain.channels import ChannelRules
from resonance_worker.engines.base import Engine, history_options
from resonance_worker.errors import EngineError
from resonance_worker.eventlog import EventLog, EventLogError
from resonance_worker.tracing import TRACER, current_traceparent
from resonance_worker.tracing import enabled as tracing_enabled

log = logging.getLogger("resonance.worker.living")


class Journal:
    """Appends events to the log off the caller's path (the pain hooks that raise them are synchronous)."""

    def __init__(self, event_log: EventLog, on_failure: Callable[[], None]) -> None:
        self.event_log = event_log
        self._on_failure = on_failure
        self._appending: set[asyncio.Future[None]] = set()

    def append(self, event: events.Event) -> None:
        """Append ``event`` soon (needs a running event loop); the task is kept until it is done."""
        task = asyncio.ensure_future(self._append_now(event))
        self._appending.add(task)
        task.add_done_callback(self._appending.discard)

    async def settle(self) -> None:
        """Wait until every event handed over so far is appended (or failed)."""
        while self._appending:
            await asyncio.gather(*list(self._appending))

    async def _append_now(self, event: events.Event) -> None:
        """Runs in the context of whoever raised the event (``ensure_future`` copies it): traced,
        the append is a span of that trace, and its ``traceparent`` is kept beside the event."""
        try:
            if tracing_enabled():
                with TRACER.start_as_current_span(
                    "eventlog.append", attributes={"resonance.event": event.type.value}
                ):
                    await self.event_log.append(event, trace=current_traceparent())
            else:
                await self.event_log.append(event)
        except EventLogError as exc:
            log.warning("event not appended", extra={"event": event.type.value, "error": str(exc)})
            self._on_failure()


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
