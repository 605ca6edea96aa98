"""Where shared Yjs documents live across workers: an update log per document, a snapshot, awareness.

Each document has three keys, under one hash tag so they share a Redis Cluster slot:

- ``<prefix>.doc.{<channel>}.log``: a list of raw Yjs V1 updates, oldest first;
- ``<prefix>.doc.{<channel>}.meta``: a hash: ``snap`` (the compacted state, one update),
  ``base`` (how many updates the snapshot folds in: the position of the list's first entry) and
  ``size`` (bytes of the snapshot plus the updates after it: an upper bound of the document's size);
- ``<prefix>.doc.{<channel>}.aw``: a hash: Yjs client id → ``<expiry ms>:<awareness entry>``.

A position is the number of updates folded in so far (snapshot and log together). Every call is
one Lua script, so a reader sees a snapshot and the log after it from one moment: ``append``
checks the size limit and appends; ``load`` returns what follows a position (with the snapshot
when the position is older than it); ``compact`` replaces the snapshot and trims the log only if
its position is newer than the snapshot's. Every write renews the keys' TTL (idle documents
expire from Redis). :class:`MemoryDocStore` does the same in one process.

One round trip per update: given the engine's ``framer`` (:meth:`RedisEngine.fanout_frame
<resonance_worker.engines.redis.RedisEngine.fanout_frame>`: the pub/sub channel, the frame of a
publication without history, ``publish``/``spublish``), ``append`` also publishes the update's
publication in the same script, on the same hash tag (a doc channel's name holds no braces, so
``{<channel>}`` is the engine's tag for it too: one Cluster slot). A refused update (past the size
limit) is never published, and one appended is published in the same atomic step, so a reader that
loads after it finds it in the log and a subscriber of before it receives it. Without a framer the
caller publishes after the append (:attr:`DocStore.publishes`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from resonance_worker.errors import EngineError, EngineTimeoutError

T = TypeVar("T")


class DocTooLargeError(Exception):
    """The update would take the document past its size limit (nothing was appended)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"document size {size} + update would exceed the limit of {limit} bytes")
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True)
class DocChunk:
    """What follows a position: ``snapshot`` (when the position was older than it), the updates
    after, and the position they lead to."""

    snapshot: bytes | None
    updates: list[bytes]
    position: int
    size: int


@dataclass(frozen=True, slots=True)
class Fanout:
    """A publication as the engine sends it to every worker: ``command`` (``publish`` or ``spublish``)
    ``frame`` on the pub/sub ``channel``."""

    channel: bytes
    frame: bytes
    command: str


Framer = Callable[[str, bytes], Fanout]
"""The engine's fan-out of ``data`` on a channel, as one pub/sub message (no history kept)."""


class DocStore(Protocol):
    publishes: bool
    """Whether :meth:`append` publishes its ``publish`` data on the document's channel itself (one
    round trip); if not, the caller publishes it after the append."""

    async def append(
        self, doc: str, update: bytes, *, limit: int, ttl_seconds: float, publish: bytes | None = None
    ) -> int:
        """Append ``update``; its position. :class:`DocTooLargeError` past ``limit`` bytes (nothing
        appended, nothing published). With :attr:`publishes`, ``publish`` (the publication's data)
        goes to the channel's subscribers on every worker in the same step."""

    async def load(self, doc: str, after: int) -> DocChunk:
        """The snapshot (if ``after`` is older than it) and the updates after ``after``."""

    async def compact(self, doc: str, snapshot: bytes, position: int, *, ttl_seconds: float) -> bool:
        """Make ``snapshot`` (the state at ``position``) the document's base; False if it is not newer."""

    async def set_awareness(
        self, doc: str, entries: dict[int, bytes], *, expires_ms: int, ttl_seconds: float
    ) -> None:
        """Keep each client's latest awareness entry until ``expires_ms``."""

    async def awareness(self, doc: str, now_ms: int) -> dict[int, bytes]:
        """The live awareness entries (expired ones are dropped)."""

    async def remove_awareness(self, doc: str, client_ids: list[int]) -> None: ...

    async def close(self) -> None: ...


@dataclass
class _MemoryDoc:
    snapshot: bytes | None = None
    base: int = 0
    size: int = 0
    log: list[bytes] = field(default_factory=list)
    aware: dict[int, tuple[int, bytes]] = field(default_factory=dict)


class MemoryDocStore:
    """One process's documents (the memory engine's companion; TTLs are not kept)."""

    publishes = False
    """The memory engine fans out itself: the caller publishes."""

    def __init__(self) -> None:
        self.docs: dict[str, _MemoryDoc] = {}

    async def append(
        self, doc: str, update: bytes, *, limit: int, ttl_seconds: float, publish: bytes | None = None
    ) -> int:
        entry = self.docs.setdefault(doc, _MemoryDoc())
        if entry.size + len(update) > limit:
            raise DocTooLargeError(entry.size, limit)
        entry.log.append(update)
        entry.size += len(update)
        return entry.base + len(entry.log)

    async def load(self, doc: str, after: int) -> DocChunk:
        entry = self.docs.get(doc) or _MemoryDoc()
        end = entry.base + len(entry.log)
        if after < entry.base or after > end:
            return DocChunk(entry.snapshot, list(entry.log), end, entry.size)
        return DocChunk(None, entry.log[after - entry.base :], end, entry.size)

    async def compact(self, doc: str, snapshot: bytes, position: int, *, ttl_seconds: float) -> bool:
        entry = self.docs.setdefault(doc, _MemoryDoc())
        if position <= entry.base or position > entry.base + len(entry.log):
            return False
        entry.log = entry.log[position - entry.base :]
        entry.base, entry.snapshot = position, snapshot
        entry.size = len(snapshot) + sum(len(u) for u in entry.log)
        return True

    async def set_awareness(
        self, doc: str, entries: dict[int, bytes], *, expires_ms: int, ttl_seconds: float
    ) -> None:
        aware = self.docs.setdefault(doc, _MemoryDoc()).aware
        for client_id, raw in entries.items():
            aware[client_id] = (expires_ms, raw)

    async def awareness(self, doc: str, now_ms: int) -> dict[int, bytes]:
        entry = self.docs.get(doc)
        if entry is None:
            return {}
        for client_id in [c for c, (expiry, _) in entry.aware.items() if expiry <= now_ms]:
            del entry.aware[client_id]
        return {client_id: raw for client_id, (_, raw) in entry.aware.items()}

    async def remove_awareness(self, doc: str, client_ids: list[int]) -> None:
        entry = self.docs.get(doc)
        for client_id in client_ids if entry is not None else ():
            entry.aware.pop(client_id, None)  # type: ignore[union-attr]

    async def close(self) -> None:
        return None


# KEYS: log, meta. ARGV: update, limit, ttl ms[, publish command, pub/sub channel, frame].
# Returns the new position, or {-1, size} (refused: nothing appended, nothing published).
_APPEND = """
local size = tonumber(redis.call("hget", KEYS[2], "size") or "0")
if size + string.len(ARGV[1]) > tonumber(ARGV[2]) then return {-1, size} end
local n = redis.call("rpush", KEYS[1], ARGV[1])
redis.call("hincrby", KEYS[2], "size", string.len(ARGV[1]))
local base = tonumber(redis.call("hget", KEYS[2], "base") or "0")
redis.call("pexpire", KEYS[1], ARGV[3])
redis.call("pexpire", KEYS[2], ARGV[3])
if ARGV[4] then
  redis.call(ARGV[4], ARGV[5], ARGV[6])
end
return {base + n, size + string.len(ARGV[1])}
"""

# KEYS: log, meta. ARGV: after. Returns {snapshot or false, position, size, updates...}.
_LOAD = """
local meta = redis.call("hmget", KEYS[2], "snap", "base", "size")
local base = tonumber(meta[2] or "0")
local after = tonumber(ARGV[1])
local from = after - base
local snap = false
if from < 0 or from > redis.call("llen", KEYS[1]) then  -- older than the snapshot, or the log was lost
  from = 0
  snap = meta[1]
end
local updates = redis.call("lrange", KEYS[1], from, -1)
local out = {snap, base + from + #updates, tonumber(meta[3] or "0")}
for _, u in ipairs(updates) do out[#out + 1] = u end
return out
"""

# KEYS: log, meta. ARGV: snapshot, position, ttl ms. Returns 1 if compacted.
_COMPACT = """
local base = tonumber(redis.call("hget", KEYS[2], "base") or "0")
local position = tonumber(ARGV[2])
local length = redis.call("llen", KEYS[1])
if position <= base or position > base + length then return 0 end
redis.call("ltrim", KEYS[1], position - base, -1)
local rest = 0
for _, u in ipairs(redis.call("lrange", KEYS[1], 0, -1)) do rest = rest + string.len(u) end
redis.call("hset", KEYS[2], "snap", ARGV[1], "base", position, "size", string.len(ARGV[1]) + rest)
redis.call("pexpire", KEYS[1], ARGV[3])
redis.call("pexpire", KEYS[2], ARGV[3])
return 1
"""


class RedisDocStore:
    """Documents in Redis, on a client of their own; errors become :class:`EngineError`. With the
    engine's ``framer`` (on the same Redis) appends publish too (module docstring)."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str, timeout: float = 5.0, framer: Framer | None = None
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.timeout = timeout
        self.framer = framer
        self.publishes = framer is not None
        self._append = client.register_script(_APPEND)
        self._load = client.register_script(_LOAD)
        self._compact = client.register_script(_COMPACT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> RedisDocStore:
        return cls(aioredis.Redis.from_url(url), prefix=prefix)

    def _keys(self, doc: str) -> tuple[str, str, str]:
        base = f"{self.prefix}.doc.{{{doc}}}"
        return f"{base}.log", f"{base}.meta", f"{base}.aw"

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(make(), self.timeout)
        except TimeoutError:
            raise EngineTimeoutError("Redis document store timed out") from None
        except RedisError as exc:
            raise EngineError(f"Redis document store: {exc}") from exc

    async def append(
        self, doc: str, update: bytes, *, limit: int, ttl_seconds: float, publish: bytes | None = None
    ) -> int:
        log, meta, _ = self._keys(doc)
        args: list[Any] = [update, limit, int(ttl_seconds * 1000)]
        if publish is not None and self.framer is not None:
            fanout = self.framer(doc, publish)
            args += [fanout.command, fanout.channel, fanout.frame]
        result: Any = await self._call(lambda: self._append(keys=[log, meta], args=args))
        if int(result[0]) < 0:
            raise DocTooLargeError(int(result[1]), limit)
        return int(result[0])

    async def load(self, doc: str, after: int) -> DocChunk:
        log, meta, _ = self._keys(doc)
        result: Any = await self._call(lambda: self._load(keys=[log, meta], args=[after]))
        snapshot = result[0] if result[0] else None
        return DocChunk(snapshot, list(result[3:]), int(result[1]), int(result[2]))

    async def compact(self, doc: str, snapshot: bytes, position: int, *, ttl_seconds: float) -> bool:
        log, meta, _ = self._keys(doc)
        done: Any = await self._call(
            lambda: self._compact(keys=[log, meta], args=[snapshot, position, int(ttl_seconds * 1000)])
        )
        return bool(done)

    async def set_awareness(
        self, doc: str, entries: dict[int, bytes], *, expires_ms: int, ttl_seconds: float
    ) -> None:
        _, _, aw = self._keys(doc)
        mapping = {str(c): str(expires_ms).encode() + b":" + raw for c, raw in entries.items()}

        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(aw, mapping=mapping)  # type: ignore[arg-type]
                pipe.pexpire(aw, int(ttl_seconds * 1000))
                await pipe.execute()

        await self._call(write)

    async def awareness(self, doc: str, now_ms: int) -> dict[int, bytes]:
        _, _, aw = self._keys(doc)
        found: Any = await self._call(lambda: self.client.hgetall(aw))
        live, expired = {}, []
        for key, value in found.items():
            expiry, _, raw = value.partition(b":")
            if int(expiry) <= now_ms:
                expired.append(key)
            else:
                live[int(key)] = raw
        if expired:
            await self._call(lambda: self.client.hdel(aw, *expired))
        return live

    async def remove_awareness(self, doc: str, client_ids: list[int]) -> None:
        if client_ids:
            _, _, aw = self._keys(doc)
            await self._call(lambda: self.client.hdel(aw, *map(str, client_ids)))

    async def close(self) -> None:
        await self.client.aclose()
