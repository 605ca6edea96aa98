"""The in-process event log of the single-node (memory engine) mode.

Same interface and semantics as :class:`~resonance_worker.eventlog.redis.RedisEventLog`
(log ids, one consumer group, pending entries, claims, retention), kept in this
process: it survives a projector crash, not a worker restart. The clock is
injectable so tests can drive idle times.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from resonance_worker.domain.events import Event
from resonance_worker.eventlog.base import (
    DEFAULT_GROUP,
    MAX_BLOCK_MS,
    ClaimResult,
    LogEntry,
    LogLag,
    Retention,
    check_consumer,
    check_count,
    check_event,
    check_log_ids,
    check_millis,
    check_trace,
    check_window,
    parse_log_id,
)


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_ms: int


class MemoryEventLog:
    """A list of ``((ms, seq), event)`` in log order, plus the group's pending table."""

    def __init__(
        self,
        *,
        group: str = DEFAULT_GROUP,
        retention: Retention | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.group = group
        self.retention = retention or Retention()
        self._clock = clock
        self._keys: list[tuple[int, int]] = []
        self._events: list[Event] = []
        self._traces: dict[tuple[int, int], str] = {}
        self._last: tuple[int, int] = (0, 0)
        self._delivered: tuple[int, int] = (0, 0)
        self._pending: dict[tuple[int, int], _Pending] = {}
        self._appended = asyncio.Event()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def append(self, event: Event, *, trace: str | None = None) -> str:
        return (await self.append_many([event], trace=trace))[0]

    async def append_many(self, events: Sequence[Event], *, trace: str | None = None) -> list[str]:
        checked = [check_event(event) for event in events]
        trace = check_trace(trace)
        ids = []
        for event in checked:
            ms = max(self._now_ms(), self._last[0])
            key = (ms, self._last[1] + 1 if ms == self._last[0] else 0)
            self._keys.append(key)
            self._events.append(event)
            if trace is not None:
                self._traces[key] = trace
            self._last = key
            ids.append(f"{key[0]}-{key[1]}")
        self._trim()
        if checked:
            self._appended.set()
        return ids

    def _trim(self) -> None:
        drop = 0
        if self.retention.max_len is not None:
            drop = max(0, len(self._keys) - self.retention.max_len)
        elif self.retention.max_age_ms is not None:
            drop = bisect.bisect_left(self._keys, (self._now_ms() - self.retention.max_age_ms, 0))
        if drop:
            for key in self._keys[:drop]:
                self._traces.pop(key, None)
            del self._keys[:drop]
            del self._events[:drop]

    async def read_new(self, consumer: str, count: int = 100, block_ms: int = 0) -> list[LogEntry]:
        check_consumer(consumer)
        check_count(count)
        check_millis(block_ms, "block_ms", maximum=MAX_BLOCK_MS)
        start = bisect.bisect_right(self._keys, self._delivered)
        if start == len(self._keys) and block_ms > 0:
            self._appended.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block_ms / 1000):
                    await self._appended.wait()
            start = bisect.bisect_right(self._keys, self._delivered)
        chosen = list(
            zip(self._keys[start : start + count], self._events[start : start + count], strict=True)
        )
        now = self._now_ms()
        for key, _ in chosen:
            self._pending[key] = _Pending(consumer, now)
        if chosen:
            self._delivered = chosen[-1][0]
        return [LogEntry(f"{key[0]}-{key[1]}", event, trace=self._traces.get(key)) for key, event in chosen]

    async def ack(self, log_ids: Sequence[str]) -> int:
        acked = 0
        for log_id in check_log_ids(log_ids):
            ms, seq = log_id.split("-")
            if self._pending.pop((int(ms), int(seq)), None) is not None:
                acked += 1
        return acked

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int = 100) -> ClaimResult:
        check_consumer(consumer)
        check_millis(min_idle_ms, "min_idle_ms")
        check_count(count)
        now = self._now_ms()
        entries: list[LogEntry] = []
        trimmed: list[str] = []
        for key in sorted(self._pending):
            if len(entries) + len(trimmed) >= count:
                break
            pending = self._pending[key]
            if now - pending.delivered_ms < min_idle_ms:
                continue
            log_id = f"{key[0]}-{key[1]}"
            index = bisect.bisect_left(self._keys, key)
            if index == len(self._keys) or self._keys[index] != key:
                # Trimmed by retention before anyone acknowledged it: report and forget it.
                del self._pending[key]
                trimmed.append(log_id)
                continue
            pending.consumer, pending.delivered_ms = consumer, now
            entries.append(LogEntry(log_id, self._events[index], trace=self._traces.get(key)))
        return ClaimResult(entries, trimmed)

    async def lag(self) -> LogLag:
        undelivered = len(self._keys) - bisect.bisect_right(self._keys, self._delivered)
        return LogLag(len(self._pending), undelivered)

    async def replay(
        self, since_ms: int | None = None, until_ms: int | None = None, *, limit: int = 1000
    ) -> list[Event]:
        since, until = check_window(since_ms, until_ms)
        check_count(limit, "limit")
        start = 0 if since is None else bisect.bisect_left(self._keys, (since, 0))
        result: list[Event] = []
        for key, event in zip(self._keys[start:], self._events[start:], strict=True):
            if (until is not None and key[0] > until) or len(result) >= limit:
                break
            result.append(event)
        return result

    async def length(self) -> int:
        return len(self._keys)

    async def select(
        self, match: Callable[[Event], bool], *, until_ms: int | None = None
    ) -> list[tuple[str, Event]]:
        return [
            (f"{ms}-{seq}", event)
            for (ms, seq), event in zip(self._keys, self._events, strict=True)
            if (until_ms is None or ms <= until_ms) and match(event)
        ]

    async def delete(self, log_ids: Sequence[str]) -> int:
        gone = {parse_log_id(log_id) for log_id in check_log_ids(log_ids)}
        kept = [(key, event) for key, event in zip(self._keys, self._events, strict=True) if key not in gone]
        removed = len(self._keys) - len(kept)
        self._keys = [key for key, _ in kept]
        self._events = [event for _, event in kept]
        for key in gone:
            self._pending.pop(key, None)
        return removed
