"""Degraded mode (``RESONANCE_DEGRADED_LOCAL_FANOUT``): while the shared engine
is unreachable, keep serving this node's own clients.

It wraps the real engine. When a publish fails with ``EngineError`` the
publication is handed straight to this node's handler - local fan-out, offset
0, stored nowhere - and the publish is acknowledged with position ``(0, "")``,
which says exactly that: not in history, not seen by other pods, not
recoverable. Join/leave and node-to-node commands go local the same way; the
cluster-wide publish rate limit is not enforced while the engine is away, and
a failed presence removal is left to expire. Everything else (subscribing a
channel this node has no subscriber of yet, history, presence queries) still
fails with a temporary error, and ``/ready`` still answers 503, so no new
clients are routed here until the engine is back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

from resonance_worker.domain.keys import SlotScope, UserKind
from resonance_worker.engines.base import (
    ClientInfo,
    Engine,
    EngineEventHandler,
    HistoryOptions,
    Publication,
    PublishResult,
    StreamPosition,
)
from resonance_worker.errors import EngineError

log = logging.getLogger("resonance.worker.engine")

NOT_STORED = StreamPosition(0, "")
"""The position of a publication that was only fanned out locally."""


class LocalFallbackEngine:
    """``inner``, except that fan-out falls back to this node while ``inner`` fails."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.local_fanouts = 0
        self._handler: EngineEventHandler | None = None

    def _fallback(self, what: str, exc: EngineError) -> EngineEventHandler:
        if self._handler is None:
            raise exc
        self.local_fanouts += 1
        log.warning("engine unavailable: %s fanned out to this node only", what, extra={"error": str(exc)})
        return self._handler

    async def start(self, handler: EngineEventHandler | None = None) -> None:
        self._handler = handler
        await self.inner.start(handler)

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def subscribe(self, channel: str) -> None:
        await self.inner.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self.inner.unsubscribe(channel)

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
        try:
            return await self.inner.publish(
                channel,
                data,
                info=info,
                tags=tags,
                history=history,
                idempotency_key=idempotency_key,
                idempotency_ttl_seconds=idempotency_ttl_seconds,
            )
        except EngineError as exc:
            handler = self._fallback("publication", exc)
            publication = Publication(data, 0, info, dict(tags or {}), int(time.time() * 1000))
            handler.on_publication(channel, publication, NOT_STORED)
            return PublishResult(NOT_STORED)

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        try:
            await self.inner.publish_join(channel, info)
        except EngineError as exc:
            self._fallback("join", exc).on_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        try:
            await self.inner.publish_leave(channel, info)
        except EngineError as exc:
            self._fallback("leave", exc).on_leave(channel, info)

    async def publish_control(self, payload: bytes) -> None:
        try:
            await self.inner.publish_control(payload)
        except EngineError as exc:
            self._fallback("control command", exc).on_control(payload)

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
        meta_ttl_seconds: float = 0.0,
    ) -> tuple[list[Publication], StreamPosition]:
        return await self.inner.history(
            channel, since=since, limit=limit, reverse=reverse, meta_ttl_seconds=meta_ttl_seconds
        )

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
        return await self.inner.history_with_presence(
            channel,
            info,
            presence_ttl_seconds=presence_ttl_seconds,
            since=since,
            limit=limit,
            meta_ttl_seconds=meta_ttl_seconds,
        )

    async def remove_history(self, channel: str) -> None:
        await self.inner.remove_history(channel)

    async def add_presence(self, channel: str, info: ClientInfo, *, ttl_seconds: float) -> None:
        await self.inner.add_presence(channel, info, ttl_seconds=ttl_seconds)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        with contextlib.suppress(EngineError):  # the entry expires with its TTL
            await self.inner.remove_presence(channel, client_id)

    async def leave_with_presence(self, channel: str, info: ClientInfo) -> None:
        try:
            await self.inner.leave_with_presence(channel, info)
        except EngineError as exc:  # the presence entry expires with its TTL; the leave goes out here
            self._fallback("leave", exc).on_leave(channel, info)

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return await self.inner.presence(channel)

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        return await self.inner.presence_stats(channel)

    async def take_token(self, key: str, *, rate_per_second: float, burst: int) -> float:
        try:
            return await self.inner.take_token(key, rate_per_second=rate_per_second, burst=burst)
        except EngineError:
            return 0.0  # the cluster-wide bucket lives in the engine; per-connection limits still hold

    async def take_slot(
        self, scope: SlotScope, subject: str, holder: str, *, limit: int, ttl_seconds: float
    ) -> bool:
        return await self.inner.take_slot(scope, subject, holder, limit=limit, ttl_seconds=ttl_seconds)

    async def release_slot(self, scope: SlotScope, subject: str, holder: str) -> None:
        await self.inner.release_slot(scope, subject, holder)

    async def refresh_slots(self, slots: Sequence[tuple[SlotScope, str, str]], *, ttl_seconds: float) -> None:
        await self.inner.refresh_slots(slots, ttl_seconds=ttl_seconds)

    async def person_read(self, user: str, kinds: Sequence[UserKind]) -> dict[str, bytes | list[bytes]]:
        return await self.inner.person_read(user, kinds)

    async def person_write(self, user: str, kind: UserKind, value: bytes, *, ttl_seconds: float) -> None:
        await self.inner.person_write(user, kind, value, ttl_seconds=ttl_seconds)

    async def person_append(
        self, user: str, kind: UserKind, items: Sequence[bytes], *, max_items: int, ttl_seconds: float
    ) -> None:
        await self.inner.person_append(user, kind, items, max_items=max_items, ttl_seconds=ttl_seconds)

    async def person_erase(self, user: str, kinds: Sequence[UserKind]) -> None:
        await self.inner.person_erase(user, kinds)
