"""The document store's contract, on the in-memory store, on a real Redis and on a real Redis Cluster
(one hash tag per document): append with a size limit, load after a position (with the snapshot when
older), compaction, awareness expiry; with the Redis engine's framer, an append that publishes in the
same script (received by the engine's subscribers; a refused one never published)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pycrdt
import pytest
import redis.asyncio as aioredis
from resonance_worker.engines.docs import DocStore, DocTooLargeError, MemoryDocStore, RedisDocStore

from tests.harness.redis import RedisServer
from tests.harness.rediscluster import RedisClusterNodes
from tests.worker.engines.conftest import Recorder, redis_engine


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[DocStore]:
    if request.param == "memory":
        yield MemoryDocStore()
        return
    client: aioredis.Redis | aioredis.RedisCluster
    if request.param == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        client = cluster.async_client()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = aioredis.Redis.from_url(server.url)
    yield RedisDocStore(client, prefix=f"docs-{uuid.uuid4().hex[:8]}")
    await client.aclose()


def edits(n: int) -> tuple[list[bytes], str]:
    doc: pycrdt.Doc = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(n):
        text += f"{i},"
    return updates, str(text)


def replay(snapshot: bytes | None, updates: list[bytes]) -> str:
    doc: pycrdt.Doc = pycrdt.Doc()
    for u in ([snapshot] if snapshot else []) + updates:
        doc.apply_update(u)
    return str(doc.get("t", type=pycrdt.Text))


async def test_log_snapshot_and_positions(store: DocStore) -> None:
    updates, text = edits(10)
    for i, u in enumerate(updates[:6]):
        assert await store.append("doc:a", u, limit=10_000, ttl_seconds=60) == i + 1
    chunk = await store.load("doc:a", -1)
    assert chunk.snapshot is None and chunk.position == 6 and replay(None, chunk.updates) == "0,1,2,3,4,5,"
    # A worker at position 4 compacts; the log keeps what follows.
    folded = pycrdt.merge_updates(*updates[:4])
    assert await store.compact("doc:a", folded, 4, ttl_seconds=60)
    assert not await store.compact("doc:a", folded, 4, ttl_seconds=60)  # not newer
    for u in updates[6:]:
        await store.append("doc:a", u, limit=10_000, ttl_seconds=60)
    late = await store.load("doc:a", -1)
    assert late.position == 10 and late.snapshot == folded and len(late.updates) == 6
    assert replay(late.snapshot, late.updates) == text
    tail = await store.load("doc:a", 8)
    assert tail.snapshot is None and len(tail.updates) == 2
    behind = await store.load("doc:a", 2)  # older than the snapshot: gets it
    assert behind.snapshot == folded and replay(behind.snapshot, behind.updates) == text
    lost = await store.load("doc:a", 50)  # ahead of the log (Redis lost it): everything again
    assert replay(lost.snapshot, lost.updates) == text


async def test_size_limit_refuses_and_keeps_what_was_accepted(store: DocStore) -> None:
    await store.append("doc:s", b"x" * 60, limit=100, ttl_seconds=60)
    with pytest.raises(DocTooLargeError) as refused:
        await store.append("doc:s", b"y" * 50, limit=100, ttl_seconds=60)
    assert refused.value.size == 60 and refused.value.limit == 100
    chunk = await store.load("doc:s", -1)
    assert chunk.updates == [b"x" * 60] and chunk.size == 60


async def test_awareness_expires_and_is_removed(store: DocStore) -> None:
    await store.set_awareness("doc:w", {1: b"one", 2: b"two"}, expires_ms=1000, ttl_seconds=60)
    await store.set_awareness("doc:w", {3: b"three"}, expires_ms=5000, ttl_seconds=60)
    assert await store.awareness("doc:w", 500) == {1: b"one", 2: b"two", 3: b"three"}
    assert await store.awareness("doc:w", 2000) == {3: b"three"}
    await store.remove_awareness("doc:w", [3])
    assert await store.awareness("doc:w", 0) == {}


@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_an_append_publishes_the_update_in_the_same_script(
    request: pytest.FixtureRequest, kind: str
) -> None:
    """One round trip per update: the engine's subscribers get the publication the append carried (on a
    Cluster the shard channel is on the document's slot, or the script would be refused), and an
    update past the size limit is neither appended nor published."""
    prefix = f"docs-{uuid.uuid4().hex[:8]}"
    engine, events = redis_engine(request, kind, prefix), Recorder()
    await engine.start(events)
    client: Any = engine.connector.client(timeout=5.0, socket_timeout=None)
    store = RedisDocStore(client, prefix=prefix, framer=engine.fanout_frame)
    try:
        assert store.publishes
        await engine.subscribe("doc:pub")
        assert await store.append("doc:pub", b"u1", limit=100, ttl_seconds=60, publish=b'{"m":"one"}') == 1
        await events.wait_for(lambda: len(events.of("publication", "doc:pub")) == 1)
        with pytest.raises(DocTooLargeError):
            await store.append("doc:pub", b"x" * 100, limit=100, ttl_seconds=60, publish=b'{"m":"big"}')
        assert await store.append("doc:pub", b"u3", limit=100, ttl_seconds=60, publish=b'{"m":"three"}') == 2
        await events.wait_for(lambda: len(events.of("publication", "doc:pub")) == 2)
        published = [e.publication for e in events.of("publication", "doc:pub")]
        assert [p.data for p in published if p is not None] == [b'{"m":"one"}', b'{"m":"three"}']
        assert (await store.load("doc:pub", -1)).updates == [b"u1", b"u3"]  # in the log, as published
    finally:
        await engine.close()
        await client.aclose()
