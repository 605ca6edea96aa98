"""The durable event log: one Redis Stream with one consumer group.

Key ``<prefix>.events``; each entry holds one field ``e`` = the event's canonical
JSON (``Event.to_json()``), and its stream id is the log id. The consumer group
(default ``projector``) is created at id ``0`` with ``MKSTREAM``, so it sees
every event still kept, including those appended before any projector ran; it
is re-created the same way if Redis lost it (a restart without persistence).

Calls map one to one onto Redis commands: ``append`` → ``XADD`` (with the
retention bound: ``MAXLEN ~ n`` or ``MINID ~ now−age``, in a Lua script so ``now`` is
Redis's clock), ``append_many`` → the same
in one script call, ``read_new`` → ``XREADGROUP … >``, ``ack`` → ``XACK``,
``claim_stale`` → ``XAUTOCLAIM`` (Redis ≥ 7 reports entries trimmed while pending),
``lag`` → ``XINFO GROUPS``, ``replay`` → ``XRANGE``. Every call has a deadline
(``timeout``, plus ``block_ms`` for a blocking read); Redis errors and timeouts
become :class:`EventLogError` / :class:`EventLogTimeoutError`. ``append`` returns
only after Redis replied, i.e. after the entry is stored (durable as far as the
server's persistence settings go: use AOF for a log that must survive a Redis crash).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from resonance_worker.domain.events import Event
from resonance_worker.eventlog.base import (
    DEFAULT_GROUP,
    MAX_BLOCK_MS,
    ClaimResult,
    EventLogError,
    EventLogTimeoutError,
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
    decode_entry,
)
from resonance_worker.redis_client import RedisConnector
from resonance_worker.settings import RedisMode

T = TypeVar("T")
SELECT_BATCH = 1000
"""Entries read per XRANGE (and deleted per XDEL) by ``select`` and ``delete``."""
_FIELD = b"e"
_TRACE_FIELD = b"t"

# KEYS: stream. ARGV: max age ms (-1: none), max length (-1: none), traceparent ("": none), bodies...
# Each entry is ``e <body>`` and, under a trace, ``t <traceparent>``.
# One script: the batch is atomic, and MINID is computed on Redis's clock, so a worker
# whose clock runs ahead can never trim away the entry it is appending.
_APPEND = """
local age = tonumber(ARGV[1])
local max_len = tonumber(ARGV[2])
local command = {"xadd", KEYS[1]}
if age >= 0 then
  local t = redis.call("time")
  local oldest = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - age
  for _, word in ipairs({"MINID", "~", string.format("%d", math.max(oldest, 0))}) do
    command[#command + 1] = word
  end
elseif max_len >= 0 then
  for _, word in ipairs({"MAXLEN", "~", ARGV[2]}) do
    command[#command + 1] = word
  end
end
command[#command + 1] = "*"
command[#command + 1] = "e"
local trace = ARGV[3]
local ids = {}
for i = 4, #ARGV do
  command[#command + 1] = ARGV[i]
  if trace ~= "" then
    command[#command + 1] = "t"
    command[#command + 1] = trace
  end
  ids[#ids + 1] = redis.call(unpack(command))
  for _ = 1, (trace ~= "" and 3 or 1) do
    command[#command] = nil
  end
end
return ids
"""


def _text(value: bytes | str) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


class RedisEventLog:
    """The event log on a Redis Stream. Pass a client built with ``decode_responses=False``."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "resonance",
        group: str = DEFAULT_GROUP,
        retention: Retention | None = None,
        timeout: float = 2.0,
        owns_client: bool = False,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.key = f"{prefix}.events"
        self.group = group
        self.retention = retention or Retention()
        self._client = client
        self._append_script = client.register_script(_APPEND)
        self._timeout = timeout
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, *, tls: Mapping[str, Any] | None = None, **options: Any) -> RedisEventLog:
        """A log with a client of its own (``tls``: redis-py's ``ssl_*`` arguments). No socket read
        timeout: each call has its own deadline, and a blocking read may legitimately wait longer
        than ``timeout``."""
        timeout = float(options.get("timeout", 2.0))
        client = aioredis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=None, **dict(tls or {})
        )
        return cls(client, owns_client=True, **options)

    @classmethod
    def from_connector(cls, connector: RedisConnector, **options: Any) -> RedisEventLog:
        """A log with a client of its own from ``connector`` (in Sentinel mode: the primary the
        Sentinels name, found again after a failover). Nothing is retried under the caller: an
        append that fails is the journal's to retry (``living.outbox``), in order."""
        if connector.mode is RedisMode.STANDALONE:
            return cls.from_url(connector.url, tls=connector.tls_options(), **options)
        timeout = float(options.get("timeout", 2.0))
        return cls(connector.client(timeout=timeout, socket_timeout=None), owns_client=True, **options)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _call(self, what: str, call: Callable[[], Awaitable[T]], extra_s: float = 0.0) -> T:
        deadline = self._timeout + extra_s
        try:
            async with asyncio.timeout(deadline):
                return await call()
        except TimeoutError as exc:
            raise EventLogTimeoutError(f"event log {what} timed out after {deadline:g} s") from exc
        except (RedisError, OSError) as exc:
            raise EventLogError(f"event log {what} failed: {exc}") from exc

    async def setup(self) -> None:
        """Create the stream and the consumer group if missing (idempotent)."""
        await self._call("setup", self._create_group)

    async def _create_group(self) -> None:
        try:
            await self._client.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _with_group(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        await self._create_group()
        return await call()

    async def append(self, event: Event, *, trace: str | None = None) -> str:
        return (await self.append_many([event], trace=trace))[0]

    async def append_many(self, events: Sequence[Event], *, trace: str | None = None) -> list[str]:
        bodies = [check_event(event).to_json().encode("utf-8") for event in events]
        traceparent = check_trace(trace) or ""
        if not bodies:
            return []
        age = -1 if self.retention.max_age_ms is None else self.retention.max_age_ms
        max_len = -1 if self.retention.max_len is None else self.retention.max_len
        ids = await self._call(
            "append", lambda: self._append_script(keys=[self.key], args=[age, max_len, traceparent, *bodies])
        )
        return [_text(log_id) for log_id in ids]

    async def read_new(self, consumer: str, count: int = 100, block_ms: int = 0) -> list[LogEntry]:
        check_consumer(consumer)
        check_count(count)
        check_millis(block_ms, "block_ms", maximum=MAX_BLOCK_MS)

        async def run() -> Any:
            return await self._client.xreadgroup(
                self.group, consumer, {self.key: ">"}, count=count, block=block_ms or None
            )

        reply = await self._call("read", lambda: self._with_group(run), extra_s=block_ms / 1000)
        return [
            decode_entry(_text(log_id), fields.get(_FIELD), fields.get(_TRACE_FIELD))
            for _stream, entries in reply or []
            for log_id, fields in entries
        ]

    async def ack(self, log_ids: Sequence[str]) -> int:
        ids = check_log_ids(log_ids)
        if not ids:
            return 0
        acked = await self._call("ack", lambda: self._client.xack(self.key, self.group, *ids))
        return int(acked)

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int = 100) -> ClaimResult:
        check_consumer(consumer)
        check_millis(min_idle_ms, "min_idle_ms")
        check_count(count)

        async def run() -> Any:
            return await self._client.xautoclaim(
                self.key, self.group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
            )

        reply = await self._call("claim", lambda: self._with_group(run))
        entries = [
            decode_entry(_text(log_id), fields.get(_FIELD), fields.get(_TRACE_FIELD))
            for log_id, fields in reply[1]
        ]
        trimmed = [_text(log_id) for log_id in (reply[2] if len(reply) > 2 else [])]
        return ClaimResult(entries, trimmed)

    async def lag(self) -> LogLag:
        async def run() -> tuple[list[dict[str, Any]], int]:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.exists(self.key)
                pipe.xlen(self.key)
                exists, length = await pipe.execute()
            if not exists:
                return [], 0
            return await self._client.xinfo_groups(self.key), int(length)

        groups, length = await self._call("lag", run)
        for info in groups:
            if _text(info["name"]) == self.group:
                lag = info.get("lag")
                return LogLag(int(info["pending"]), None if lag is None else int(lag))
        return LogLag(0, length)

    async def replay(
        self, since_ms: int | None = None, until_ms: int | None = None, *, limit: int = 1000
    ) -> list[Event]:
        since, until = check_window(since_ms, until_ms)
        check_count(limit, "limit")
        low = "-" if since is None else str(since)
        high = "+" if until is None else str(until)
        reply: Any = await self._call("replay", lambda: self._client.xrange(self.key, low, high, count=limit))
        events = []
        for log_id, fields in reply:
            entry = decode_entry(_text(log_id), fields.get(_FIELD), fields.get(_TRACE_FIELD))
            if entry.event is not None:
                events.append(entry.event)
        return events

    async def length(self) -> int:
        return int(await self._call("length", lambda: self._client.xlen(self.key)))

    async def select(
        self, match: Callable[[Event], bool], *, until_ms: int | None = None
    ) -> list[tuple[str, Event]]:
        found: list[tuple[str, Event]] = []
        low, high = "-", "+" if until_ms is None else str(until_ms)
        while True:
            reply: Any = await self._call("select", functools.partial(self._xrange, low, high))
            for log_id, fields in reply:
                entry = decode_entry(_text(log_id), fields.get(_FIELD))
                if entry.event is not None and match(entry.event):
                    found.append((entry.log_id, entry.event))
            if len(reply) < SELECT_BATCH:
                return found
            low = "(" + _text(reply[-1][0])

    async def _xrange(self, low: str, high: str) -> Any:
        return await self._client.xrange(self.key, low, high, count=SELECT_BATCH)

    async def delete(self, log_ids: Sequence[str]) -> int:
        ids = check_log_ids(log_ids)
        removed = 0
        for start in range(0, len(ids), SELECT_BATCH):
            chunk = ids[start : start + SELECT_BATCH]
            removed += int(await self._call("delete", functools.partial(self._client.xdel, self.key, *chunk)))
        return removed
