"""Sharded pub/sub over a Redis Cluster (Redis 7 ``SSUBSCRIBE``/``SPUBLISH``): one connection per primary.

A sharded channel lives on the shard that owns its slot, so a publication is sent once to one shard
instead of being broadcast over the whole cluster bus. redis-py's asyncio ``ClusterPubSub`` reads its
node connections in turn (``get_sharded_message`` polls each with a timeout), so a message on one shard
would wait out the others' polls; the engine reads every shard at once instead. :class:`ShardedPubSub`
is one *generation* of connections, opened on the slot map of the moment:

- one plain ``PubSub`` per primary, each subscribed to an *anchor* channel of a slot that primary owns,
  so every connection carries traffic from the start (its liveness ping has something to read) and
  hears when that primary loses its slots;
- :meth:`ShardedPubSub.pubsub_for` routes a channel to the connection of its slot's primary; a slot
  owned by a primary this generation has no connection to (a replica promoted since) marks the
  generation :attr:`~ShardedPubSub.stale`.

The engine's reader (``RedisEngine._pubsub_forever``) reads every connection of a generation; when one
breaks, a node drops a wanted subscription (``sunsubscribe`` pushed by the server: its slot moved) or the
generation goes stale, it closes the generation, refreshes the slot map and opens the next one,
subscribing every wanted channel again — the same path as a lost connection to a single Redis, with the
same fan-out-resumed signal so positioned subscriptions look for anything missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from redis.exceptions import RedisError

from resonance_worker.errors import EngineError
from resonance_worker.redis_client import RedisConnector


class SlotMapChangedError(EngineError):
    """The Cluster's slot map changed under this generation of pub/sub connections."""


class ShardedPubSub:
    """One generation of sharded pub/sub connections: one per primary of the slot map it opened with."""

    def __init__(self, cluster: Any, connector: RedisConnector, *, prefix: str, timeout: float) -> None:
        self._cluster = cluster  # a redis.asyncio.RedisCluster
        self._connector = connector
        self._prefix = prefix
        self._timeout = timeout
        self._clients: dict[str, aioredis.Redis] = {}
        self._pubsubs: dict[str, PubSub] = {}
        self.anchors: set[bytes] = set()
        self.stale = asyncio.Event()

    @property
    def pubsubs(self) -> list[PubSub]:
        return list(self._pubsubs.values())

    @property
    def primaries(self) -> frozenset[str]:
        """The primaries (``host:port``) this generation connected to."""
        return frozenset(self._pubsubs)

    async def open(self) -> None:
        """Refresh the slot map and connect to every primary, each subscribed to its anchor."""
        await self._cluster.initialize()
        await self._cluster.nodes_manager.initialize()
        for node in self._cluster.get_primaries():
            client = self._connector.node_client(node.host, node.port, timeout=self._timeout)
            self._clients[node.name] = client
            self._pubsubs[node.name] = client.pubsub()
        for name, pubsub in self._pubsubs.items():
            anchor = self._anchor(name)
            self.anchors.add(anchor)
            await pubsub.ssubscribe(anchor)

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

    def pubsub_for(self, channel: bytes) -> PubSub:
        """The connection to the primary of ``channel``'s slot; marks the generation stale (and
        raises) when that primary is not one it is connected to."""
        try:
            return self._pubsubs[self._node_name(channel)]
        except (KeyError, RedisError) as exc:
            self.stale.set()
            raise SlotMapChangedError("the Redis Cluster slot map changed; pub/sub reconnecting") from exc

    async def subscribe(self, channels: Iterable[bytes]) -> None:
        """``SSUBSCRIBE`` each channel on its primary, one command per slot (a command's channels must
        share a slot), in chunks."""
        by_slot: dict[int, list[bytes]] = defaultdict(list)
        for channel in channels:
            by_slot[key_slot(channel)].append(channel)
        for group in by_slot.values():
            pubsub = self.pubsub_for(group[0])
            for start in range(0, len(group), 512):
                await pubsub.ssubscribe(*group[start : start + 512])

    async def aclose(self) -> None:
        for pubsub in self._pubsubs.values():
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        for client in self._clients.values():
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
        self._pubsubs.clear()
        self._clients.clear()
