"""Sharded pub/sub over a Redis Cluster (Redis 7 ``SSUBSCRIBE``/``SPUBLISH``): one connection per primary.

A sharded channel lives on the shard that owns its slot, so a publication is sent once to one shard
instead of being broadcast over the whole cluster bus. redis-py's asyncio ``ClusterPubSub`` reads its
node connections in turn (``get_sharded_message`` polls each with a timeout), so a message on one shard
would wait out the others' polls; the engine reads every shard at once instead.

:class:`ShardedPubSub` keeps one :class:`Shard` - a plain ``PubSub`` with its own reader task - per
primary of the slot map, **each living and dying alone**:

- each shard's connection is subscribed to an *anchor* channel of a slot its primary owns, so it
  carries traffic from the start (its liveness ping has something to read);
- a channel is ``SSUBSCRIBE``-d on the shard of its slot's primary (:meth:`ShardedPubSub.place`);
- when a shard's connection breaks or goes silent, only that shard is closed: its channels become
  *pending*, the engine is told (``on_lost``), and the repair loop (:meth:`ShardedPubSub.run`)
  refreshes the slot map and reconnects, with jittered backoff, until every primary has a shard and
  every pending channel is placed again - on the replica promoted meanwhile, once there is one. Then
  ``on_whole`` tells the engine (positioned subscriptions look for what was missed; a new set of
  primaries is a failover seen). The other shards'
  connections are never touched: their channels keep fanning out throughout;
- a node dropping one wanted channel (``sunsubscribe`` pushed by the server: its slot moved) makes
  just that channel pending (:meth:`ShardedPubSub.moved`).

So while one slot has no primary (the seconds of a failover; for good when a primary with no replica
is lost) only that shard's channels wait. Readiness: the engine is ready while at least one shard is
connected (docs/reliability.md, "Redis Cluster").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from redis.exceptions import RedisError

from resonance_worker.domain.backoff import Backoff
from resonance_worker.errors import EngineError
from resonance_worker.redis_client import RedisConnector

log = logging.getLogger("resonance.worker.engine")

Reader = Callable[[PubSub, Callable[[bytes], None]], Awaitable[None]]
"""Reads one connection until it fails; the callback is told a channel the node dropped (slot moved)."""


class ShardDownError(EngineError):
    """The primary of a channel's slot has no live pub/sub connection now (reconnecting)."""


class Shard:
    """One primary's pub/sub connection, its anchor channel and the wanted channels placed on it."""

    def __init__(self, name: str, client: aioredis.Redis, pubsub: PubSub, anchor: bytes) -> None:
        self.name = name
        self.client = client
        self.pubsub = pubsub
        self.anchor = anchor
        self.channels: set[bytes] = set()
        self.reader: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, OSError, RuntimeError):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        with contextlib.suppress(RedisError, OSError, RuntimeError):
            await self.client.aclose()


class ShardedPubSub:
    """Independent pub/sub connections to every primary of a Redis Cluster (module docstring)."""

    def __init__(
        self,
        cluster: Any,  # a redis.asyncio.RedisCluster
        connector: RedisConnector,
        *,
        prefix: str,
        timeout: float,
        read: Reader,
        wanted: Callable[[], Iterable[bytes]],
        on_lost: Callable[[set[bytes]], None],
        on_whole: Callable[[bool], None],
        backoff: Backoff,
    ) -> None:
        self._cluster = cluster
        self._connector = connector
        self._prefix = prefix
        self._timeout = timeout
        self._read = read
        self._wanted = wanted
        self._on_lost = on_lost
        self._on_whole = on_whole
        self._backoff = backoff
        self._shards: dict[str, Shard] = {}
        self._pending: set[bytes] = set()
        self._repair = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()
        """Set while at least one shard is connected (from the end of the first pass over the primaries)."""
        self.down: set[str] = set()
        """Primaries (``host:port``) of the slot map this node has no pub/sub connection to now."""

    # -- what the engine asks -----------------------------------------------------------------

    @property
    def anchors(self) -> set[bytes]:
        return {shard.anchor for shard in self._shards.values()}

    @property
    def live(self) -> int:
        return len(self._shards)

    @property
    def primaries(self) -> frozenset[str]:
        """The primaries (``host:port``) connected now."""
        return frozenset(self._shards)

    def place(self, channel: bytes) -> PubSub:
        """The connection of ``channel``'s slot's primary, the channel recorded as placed on it (the
        caller sends the ``SSUBSCRIBE``); :class:`ShardDownError` while that primary has none."""
        try:
            name = self._node_name(channel)
        except (RedisError, LookupError) as exc:
            raise ShardDownError("the Redis Cluster slot map is being refreshed") from exc
        shard = self._shards.get(name)
        if shard is None:
            self._repair.set()
            raise ShardDownError(f"the Redis Cluster shard of this channel ({name}) is reconnecting")
        self._pending.discard(channel)
        shard.channels.add(channel)
        return shard.pubsub

    def release(self, channel: bytes) -> PubSub | None:
        """Forget ``channel``; the connection it was placed on (the caller ``SUNSUBSCRIBE``s), if any."""
        self._pending.discard(channel)
        for shard in self._shards.values():
            if channel in shard.channels:
                shard.channels.discard(channel)
                return shard.pubsub
        return None

    def moved(self, channel: bytes) -> None:
        """A node dropped ``channel`` (its slot moved): place it again, on the new owner."""
        for shard in self._shards.values():
            shard.channels.discard(channel)
        self._pending.add(channel)
        self._on_lost({channel})
        self._repair.set()

    # -- the repair loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect to every primary and place every wanted channel; then, whenever a shard is lost or a
        channel moved, repair - again and again, with backoff, until whole. Closes every shard when
        cancelled."""
        self._pending = set(self._wanted())
        attempt = 0
        lost_since_whole = False
        try:
            while True:
                self._repair.clear()
                try:
                    whole = await self._repair_once()
                except (RedisError, OSError, TimeoutError, EngineError) as exc:
                    log.warning("redis cluster pub/sub repair failed (%s: %s)", type(exc).__name__, exc)
                    whole = False
                if whole:
                    if lost_since_whole:
                        log.info("redis cluster pub/sub whole again", extra={"shards": len(self._shards)})
                    self._on_whole(lost_since_whole)
                    lost_since_whole = False
                    attempt = 0
                    await self._repair.wait()
                    lost_since_whole = True
                    continue
                lost_since_whole = True
                await asyncio.sleep(self._backoff.delay(attempt, random.uniform))
                attempt += 1
        finally:
            shards, self._shards = list(self._shards.values()), {}
            self.connected.clear()
            for shard in shards:
                if shard.reader is not None:
                    shard.reader.cancel()
            for shard in shards:
                await self._close_after(shard)

    async def _repair_once(self) -> bool:
        """Refresh the slot map, connect to the primaries that have no shard, place pending channels.
        True when whole: every primary connected, nothing pending."""
        # Bounded by the socket timeouts: redis-py asks the known nodes in turn, skipping dead ones.
        await self._cluster.nodes_manager.initialize()
        primaries = {str(node.name): node for node in self._cluster.get_primaries()}
        for name in [n for n in self._shards if n not in primaries]:  # demoted or gone
            self._lose(self._shards[name], "no longer a primary")
        missing = [node for name, node in primaries.items() if name not in self._shards]
        opened = await asyncio.gather(*(self._open(node) for node in missing), return_exceptions=True)
        for node, result in zip(missing, opened, strict=True):
            if isinstance(result, BaseException):
                log.warning("redis cluster shard %s unreachable (%s)", node.name, result)
        self.down = set(primaries) - set(self._shards)
        if self._shards:  # set once a whole pass has tried every primary (start-up waits for it)
            self.connected.set()
        wanted = set(self._wanted())
        self._pending &= wanted
        by_node: dict[str, list[bytes]] = defaultdict(list)
        for channel in self._pending:
            by_node[self._node_name(channel)].append(channel)
        for name, channels in by_node.items():
            shard = self._shards.get(name)
            if shard is None:
                continue
            try:
                await self._subscribe(shard, channels)
            except (RedisError, OSError, TimeoutError) as exc:
                self._lose(shard, f"subscribing failed: {exc}")
        return not self.down and not self._pending

    async def _open(self, node: Any) -> None:
        name = str(node.name)
        client = self._connector.node_client(node.host, node.port, timeout=self._timeout)
        pubsub = client.pubsub()
        shard = Shard(name, client, pubsub, self._anchor(name))
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.ssubscribe(shard.anchor)
                # Confirmed before it counts as up: a hung (SIGSTOP-ed) node accepts the connection and
                # the command, and answers nothing.
                while True:
                    message = await pubsub.get_message(timeout=self._timeout)
                    if message is not None and message["type"] == "ssubscribe":
                        break
        except BaseException:
            await shard.aclose()
            raise
        self._shards[name] = shard
        shard.reader = asyncio.create_task(self._read_shard(shard), name=f"redis-shard-{name}")

    async def _subscribe(self, shard: Shard, channels: list[bytes]) -> None:
        """``SSUBSCRIBE`` channels on ``shard``: one command per slot (a command's channels must share a
        slot), in chunks."""
        by_slot: dict[int, list[bytes]] = defaultdict(list)
        for channel in channels:
            by_slot[key_slot(channel)].append(channel)
        async with asyncio.timeout(self._timeout):
            for group in by_slot.values():
                for start in range(0, len(group), 512):
                    chunk = group[start : start + 512]
                    await shard.pubsub.ssubscribe(*chunk)
                    shard.channels.update(chunk)
                    self._pending.difference_update(chunk)

    async def _read_shard(self, shard: Shard) -> None:
        try:
            await self._read(shard.pubsub, self.moved)
        except (RedisError, OSError, TimeoutError, EngineError) as exc:
            self._lose(shard, f"{type(exc).__name__}: {exc}")
        except Exception:
            log.exception("redis cluster shard %s reader failed unexpectedly", shard.name)
            self._lose(shard, "reader failed")
        finally:
            await shard.aclose()

    def _lose(self, shard: Shard, why: str) -> None:
        """Take ``shard`` out: its channels pending, the engine told, the repair loop woken."""
        if self._shards.get(shard.name) is not shard:
            return
        del self._shards[shard.name]
        self.down.add(shard.name)
        if not self._shards:
            self.connected.clear()
        log.warning("redis cluster shard %s lost (%s); its channels wait for it", shard.name, why)
        channels, shard.channels = shard.channels, set()
        self._pending |= channels
        if shard.reader is not None and shard.reader is not asyncio.current_task():
            shard.reader.cancel()
            closing = asyncio.get_running_loop().create_task(self._close_after(shard))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self._on_lost(channels)
        self._repair.set()

    @staticmethod
    async def _close_after(shard: Shard) -> None:
        if shard.reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await shard.reader
        await shard.aclose()  # again if its reader did: closing twice is harmless

    # -- slots --------------------------------------------------------------------------------

    def _anchor(self, node_name: str) -> bytes:
        """A channel name of a slot ``node_name`` owns (found by trying ``<prefix>.shard.<n>``)."""
        for n in itertools.count():
            name = f"{self._prefix}.shard.{n}".encode()
            if self._node_name(name) == node_name:
                return name
        raise AssertionError("unreachable")  # pragma: no cover

    def _node_name(self, channel: bytes) -> str:
        node = self._cluster.nodes_manager.get_node_from_slot(key_slot(channel))
        return str(node.name)
