"""The in-memory engine: all channel state in this process, for single-node use.

It is a real engine, not a test double: ``make run`` serves from it. Fan-out
only reaches this process, so it must not be used by more than one pod.

Delivery: the ``EngineEventHandler`` is called **synchronously**, inside
``publish`` / ``publish_join`` / ``publish_leave`` / ``publish_control``, after
the publication is stored and before the call returns. A publisher therefore
sees its own publication pushed before its publish reply.

Time comes from two injectable clocks so tests can drive expiry without
sleeping: ``clock`` (monotonic seconds) for every TTL and the token buckets,
``wall_clock`` (Unix seconds) only for ``Publication.time_ms``.

Expired state is dropped lazily when touched and by ``sweep()``, which the
engine runs every ``sweep_interval`` seconds between ``start`` and ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from resonance_worker.domain.datarights import publication_concerns
from resonance_worker.domain.keys import USER_KINDS, SlotScope, UserKind
from resonance_worker.engines.base import (
    ClientInfo,
    EngineEventHandler,
    HistoryOptions,
    PersonalData,
    Publication,
    PublishResult,
    StreamPosition,
)

log = logging.getLogger("resonance.worker.engine")

DEFAULT_META_TTL_SECONDS = 30 * 24 * 3600.0
"""How long a channel's epoch and top offset outlive its last publication when
the caller does not say (as Centrifugo: long enough for any offline client)."""


def new_epoch() -> str:
    """A random name for one life of a stream."""
    return secrets.token_hex(4)


def validate_bucket(rate_per_second: float, burst: int) -> None:
    """Token bucket parameters every engine accepts."""
    if not rate_per_second > 0:
        raise ValueError(f"token bucket rate must be positive, got {rate_per_second!r}")
    if burst < 1:
        raise ValueError(f"token bucket burst must be at least 1, got {burst!r}")


def validate_history(history: HistoryOptions | None) -> None:
    """History options every engine accepts: a kept stream needs a positive TTL."""
    if history is None:
        return
    if history.size < 0:
        raise ValueError(f"history size must not be negative, got {history.size!r}")
    if history.size > 0 and not history.ttl_seconds > 0:
        raise ValueError(f"history ttl must be positive when history is kept, got {history.ttl_seconds!r}")


@dataclass(slots=True)
class _Stream:
    """One channel's stream: its epoch, top offset and the publications kept."""

    epoch: str
    meta_expires_at: float
    top_offset: int = 0
    items_expire_at: float = 0.0  # the kept publications all go at once, ttl after the last publish
    # Created with the first kept publication: an empty deque costs ~600 bytes, and most
    # streams (a personal channel per user) are only read for their position.
    items: deque[Publication] | None = None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float
    full_at: float  # when it will hold ``burst`` tokens again


class MemoryEngine:
    """Keeps everything in process memory. Always ready while the process runs."""

    name = "memory"

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        default_meta_ttl_seconds: float = DEFAULT_META_TTL_SECONDS,
        sweep_interval: float = 10.0,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._default_meta_ttl = default_meta_ttl_seconds
        self._sweep_interval = sweep_interval
        self._handler: EngineEventHandler | None = None
        self._subscribed: set[str] = set()
        self._streams: dict[str, _Stream] = {}
        self._idempotency: dict[tuple[str, str], tuple[PublishResult, float]] = {}
        self._presence: dict[str, dict[str, tuple[ClientInfo, float]]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._slots: dict[tuple[SlotScope, str], dict[str, float]] = {}  # holder -> expiry
        self._person: dict[tuple[str, str], tuple[bytes | list[bytes], float]] = {}  # -> (value, expiry)
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------

    async def start(self, handler: EngineEventHandler | None = None) -> None:
        self._handler = handler
        if self._sweeper is None and self._sweep_interval > 0:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="memory-engine-sweep")

    async def close(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        self._handler = None

    async def ping(self) -> None:
        return None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()

    def sweep(self) -> None:
        """Drop everything that has expired (streams, idempotency keys, presence, full buckets)."""
        now = self._clock()
        for channel in [c for c, s in self._streams.items() if s.meta_expires_at <= now]:
            del self._streams[channel]
        for stream in self._streams.values():
            if stream.items and stream.items_expire_at <= now:
                stream.items = None
        for key in [k for k, (_, expires_at) in self._idempotency.items() if expires_at <= now]:
            del self._idempotency[key]
        for channel in list(self._presence):
            self._live_presence(channel, now)
        # A bucket that has refilled completely is the same as no bucket.
        for bucket_key in [k for k, b in self._buckets.items() if b.full_at <= now]:
            del self._buckets[bucket_key]

    def state_sizes(self) -> dict[str, int]:
        """How much state is held (for metrics and to check that expiry frees memory)."""
        return {
            "streams": len(self._streams),
            "kept_publications": sum(len(s.items or ()) for s in self._streams.values()),
            "idempotency_keys": len(self._idempotency),
            "presence_channels": len(self._presence),
            "token_buckets": len(self._buckets),
        }

    # -- fan-out --------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    async def publish(
        self,
        channel: str,
        data: bytes,
        *,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        history: HistoryOptions | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl_seconds: float = 300.0,
    ) -> PublishResult:
        validate_history(history)
        now = self._clock()
        if idempotency_key is not None:
            previous = self._idempotency.get((channel, idempotency_key))
            if previous is not None and previous[1] > now:
                return PublishResult(previous[0].position, duplicate=True)
        publication = Publication(
            data=data, info=info, tags=dict(tags or {}), time_ms=int(self._wall_clock() * 1000)
        )
        if history is not None and history.size > 0:
            stream = self._stream(channel, now, history.meta_ttl_seconds, create=True)
            assert stream is not None
            stream.top_offset += 1
            publication = Publication(
                data=data,
                offset=stream.top_offset,
                info=info,
                tags=publication.tags,
                time_ms=publication.time_ms,
            )
            if stream.items is None or stream.items_expire_at <= now:
                stream.items = deque()
            stream.items.append(publication)
            while len(stream.items) > history.size:
                stream.items.popleft()
            stream.items_expire_at = now + history.ttl_seconds
            meta_ttl = history.meta_ttl_seconds or self._default_meta_ttl
            stream.meta_expires_at = max(stream.meta_expires_at, now + max(meta_ttl, history.ttl_seconds))
            position = StreamPosition(stream.top_offset, stream.epoch)
        else:
            position = StreamPosition(0, "")
        result = PublishResult(position)
        if idempotency_key is not None:
            self._idempotency[(channel, idempotency_key)] = (result, now + idempotency_ttl_seconds)
        if channel in self._subscribed:
            self._deliver(lambda handler: handler.on_publication(channel, publication, position))
        return result

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        if channel in self._subscribed:
            self._deliver(lambda handler: handler.on_join(channel, info))

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        if channel in self._subscribed:
            self._deliver(lambda handler: handler.on_leave(channel, info))

    async def publish_control(self, payload: bytes) -> None:
        self._deliver(lambda handler: handler.on_control(payload))

    def _deliver(self, event: Callable[[EngineEventHandler], None]) -> None:
        if self._handler is None:
            return
        try:
            event(self._handler)
        except Exception:
            # As with Redis: what is stored stays acknowledged; a handler bug only costs this delivery.
            log.exception("memory engine event not delivered")

    # -- history --------------------------------------------------------------------

    def _stream(self, channel: str, now: float, meta_ttl_seconds: float, *, create: bool) -> _Stream | None:
        stream = self._streams.get(channel)
        if stream is not None and stream.meta_expires_at <= now:
            del self._streams[channel]
            stream = None
        if stream is None and create:
            meta_ttl = meta_ttl_seconds or self._default_meta_ttl
            stream = self._streams[channel] = _Stream(epoch=new_epoch(), meta_expires_at=now + meta_ttl)
        return stream

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
        meta_ttl_seconds: float = 0.0,
    ) -> tuple[list[Publication], StreamPosition]:
        now = self._clock()
        # Reading a stream fixes its epoch, so a subscriber's position stays meaningful.
        stream = self._stream(channel, now, meta_ttl_seconds, create=True)
        assert stream is not None
        if meta_ttl_seconds > 0:
            stream.meta_expires_at = max(stream.meta_expires_at, now + meta_ttl_seconds)
        top = StreamPosition(stream.top_offset, stream.epoch)
        if stream.items and stream.items_expire_at <= now:
            stream.items = None
        if limit == 0 or (since is not None and since.epoch != stream.epoch):
            return [], top
        items: list[Publication]
        if reverse:
            items = [p for p in reversed(stream.items or ()) if since is None or p.offset < since.offset]
        else:
            items = [p for p in stream.items or () if since is None or p.offset > since.offset]
        if limit > 0:
            items = items[:limit]
        return items, top

    async def history_with_presence(
        self,
        channel: str,
        info: ClientInfo,
        *,
        presence_ttl_seconds: float,
        since: StreamPosition | None = None,
        limit: int = 0,
        meta_ttl_seconds: float = 0.0,
    ) -> tuple[list[Publication], StreamPosition]:
        await self.add_presence(channel, info, ttl_seconds=presence_ttl_seconds)
        return await self.history(channel, since=since, limit=limit, meta_ttl_seconds=meta_ttl_seconds)

    async def remove_history(self, channel: str) -> None:
        self._streams.pop(channel, None)

    # -- presence ---------------------------------------------------------------------

    def _live_presence(self, channel: str, now: float) -> dict[str, tuple[ClientInfo, float]]:
        clients = self._presence.get(channel)
        if clients is None:
            return {}
        for client_id in [c for c, (_, expires_at) in clients.items() if expires_at <= now]:
            del clients[client_id]
        if not clients:
            del self._presence[channel]
        return clients

    async def add_presence(self, channel: str, info: ClientInfo, *, ttl_seconds: float) -> None:
        self._presence.setdefault(channel, {})[info.client] = (info, self._clock() + ttl_seconds)

    async def leave_with_presence(self, channel: str, info: ClientInfo) -> None:
        await self.remove_presence(channel, info.client)
        await self.publish_leave(channel, info)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        clients = self._presence.get(channel)
        if clients is not None:
            clients.pop(client_id, None)
            if not clients:
                del self._presence[channel]

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return {client: info for client, (info, _) in self._live_presence(channel, self._clock()).items()}

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        clients = self._live_presence(channel, self._clock())
        return len(clients), len({info.user for info, _ in clients.values()})

    # -- cluster-wide limits ---------------------------------------------------------------

    async def take_token(self, key: str, *, rate_per_second: float, burst: int) -> float:
        validate_bucket(rate_per_second, burst)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(burst), updated_at=now, full_at=now)
        else:
            elapsed = max(0.0, now - bucket.updated_at)
            bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate_per_second)
            bucket.updated_at = now
        if bucket.tokens < 1.0:
            return (1.0 - bucket.tokens) / rate_per_second
        bucket.tokens -= 1.0
        bucket.full_at = now + (burst - bucket.tokens) / rate_per_second
        return 0.0

    # -- cluster-wide connection slots (one process: this node's) ----------------------------

    def _live_slots(self, scope: SlotScope, subject: str) -> dict[str, float]:
        now = self._clock()
        held = self._slots.setdefault((scope, subject), {})
        for holder in [h for h, expiry in held.items() if expiry <= now]:
            del held[holder]
        return held

    async def take_slot(
        self, scope: SlotScope, subject: str, holder: str, *, limit: int, ttl_seconds: float
    ) -> bool:
        held = self._live_slots(scope, subject)
        if holder not in held and len(held) >= limit:
            return False
        held[holder] = self._clock() + ttl_seconds
        return True

    async def release_slot(self, scope: SlotScope, subject: str, holder: str) -> None:
        held = self._slots.get((scope, subject))
        if held is not None:
            held.pop(holder, None)
            if not held:
                del self._slots[(scope, subject)]

    async def refresh_slots(self, slots: Sequence[tuple[SlotScope, str, str]], *, ttl_seconds: float) -> None:
        expiry = self._clock() + ttl_seconds
        for scope, subject, holder in slots:
            self._slots.setdefault((scope, subject), {})[holder] = expiry

    # -- a person's state ------------------------------------------------------------------------

    def _person_value(self, user: str, kind: UserKind) -> bytes | list[bytes] | None:
        kept = self._person.get((user, kind.name))
        if kept is None:
            return None
        if kept[1] <= self._clock():
            del self._person[(user, kind.name)]
            return None
        return kept[0]

    async def person_read(self, user: str, kinds: Sequence[UserKind]) -> dict[str, bytes | list[bytes]]:
        found = {kind.name: self._person_value(user, kind) for kind in kinds}
        return {name: value for name, value in found.items() if value is not None}

    async def person_write(self, user: str, kind: UserKind, value: bytes, *, ttl_seconds: float) -> None:
        self._person[(user, kind.name)] = (value, self._clock() + ttl_seconds)

    async def person_append(
        self, user: str, kind: UserKind, items: Sequence[bytes], *, max_items: int, ttl_seconds: float
    ) -> None:
        kept = self._person_value(user, kind)
        values = [*(kept if isinstance(kept, list) else []), *items][-max_items:]
        self._person[(user, kind.name)] = (values, self._clock() + ttl_seconds)

    async def person_erase(self, user: str, kinds: Sequence[UserKind]) -> None:
        for kind in kinds:
            self._person.pop((user, kind.name), None)

    # -- data rights (docs/data-rights.md) --------------------------------------------------

    def _users_publications(self, user: str) -> dict[str, list[Publication]]:
        found: dict[str, list[Publication]] = {}
        for channel, stream in self._streams.items():
            mine = [
                p
                for p in stream.items or ()
                if publication_concerns(channel, p.info.user if p.info else None, p.data, user)
            ]
            if mine:
                found[channel] = mine
        return found

    def _users_presence(self, user: str) -> dict[str, dict[str, ClientInfo]]:
        now = self._clock()
        found: dict[str, dict[str, ClientInfo]] = {}
        for channel in list(self._presence):
            mine = {
                c: info for c, (info, _) in self._live_presence(channel, now).items() if info.user == user
            }
            if mine:
                found[channel] = mine
        return found

    async def personal_data(self, user: str) -> PersonalData:
        """Everything kept about ``user``: kept publications, presence, person state (``USER_KINDS``)."""
        person: dict[str, Any] = {
            name: value.decode() if isinstance(value, bytes) else [item.decode() for item in value]
            for name, value in (await self.person_read(user, USER_KINDS)).items()
        }
        return PersonalData(self._users_publications(user), self._users_presence(user), person)

    async def erase_personal(self, user: str) -> dict[str, int]:
        publications = self._users_publications(user)
        for channel, mine in publications.items():
            stream = self._streams[channel]
            gone = {id(p) for p in mine}
            stream.items = deque(p for p in stream.items or () if id(p) not in gone)
        presence = self._users_presence(user)
        for channel, clients in presence.items():
            for client in clients:
                self._presence[channel].pop(client, None)
        person = await self.person_read(user, USER_KINDS)
        await self.person_erase(user, USER_KINDS)
        return {
            "publications": sum(len(m) for m in publications.values()),
            "presence": sum(len(c) for c in presence.values()),
            "person_keys": len(person),
        }

    async def expire_history(self, namespace: str, older_than_ms: int) -> int:
        removed = 0
        for channel, stream in self._streams.items():
            if not channel.startswith(namespace + ":") or not stream.items:
                continue
            kept = deque(p for p in stream.items if p.time_ms >= older_than_ms)
            removed += len(stream.items) - len(kept)
            stream.items = kept
        return removed
