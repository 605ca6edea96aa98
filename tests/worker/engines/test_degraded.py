"""Degraded mode on the real Redis engine: while its Redis is down, fan-out
falls back to this node's handler (offset 0, stored nowhere); with Redis up
everything goes through Redis as usual."""

from __future__ import annotations

from pathlib import Path

import pytest
from resonance_worker.engines import LocalFallbackEngine, build_engine
from resonance_worker.engines.base import ClientInfo, HistoryOptions, StreamPosition
from resonance_worker.engines.degraded import NOT_STORED
from resonance_worker.engines.redis import RedisEngine
from resonance_worker.errors import EngineError
from resonance_worker.settings import WorkerSettings

from tests.harness.redis import RedisServer
from tests.worker.engines.conftest import Recorder

pytestmark = pytest.mark.redis

ALICE = ClientInfo(user="alice", client="c1", conn_info=None, chan_info=None)
HISTORY = HistoryOptions(size=10, ttl_seconds=60)


def test_build_engine_wraps_redis_only_when_asked() -> None:
    plain = build_engine(WorkerSettings(engine="redis"))
    wrapped = build_engine(WorkerSettings(engine="redis", degraded_local_fanout=True))
    assert isinstance(plain, RedisEngine)
    assert isinstance(wrapped, LocalFallbackEngine) and wrapped.name == "redis"


async def test_local_fallback_while_redis_is_down(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "degraded-redis").start()
    handler = Recorder()
    engine = LocalFallbackEngine(RedisEngine(redis.url, prefix="degraded", timeout=0.5))
    try:
        await engine.start(handler)
        await engine.ping()
        await engine.subscribe("chat:x")
        stored = await engine.publish("chat:x", b'{"up":1}', history=HISTORY)
        assert stored.position.offset == 1
        await handler.wait_for(lambda: any(e.kind == "publication" for e in handler.events))
        assert engine.local_fanouts == 0
        await engine.add_presence("chat:x", ALICE, ttl_seconds=30)
        assert set(await engine.presence("chat:x")) == {"c1"}
        assert await engine.presence_stats("chat:x") == (1, 1)
        assert (await engine.history("chat:x", limit=-1))[1].offset == 1
        handler.events.clear()

        redis.kill()
        with pytest.raises(EngineError):
            await engine.ping()
        result = await engine.publish("chat:x", b'{"down":1}', info=ALICE, tags={"k": "v"}, history=HISTORY)
        assert result.position == NOT_STORED
        await engine.publish_join("chat:x", ALICE)
        await engine.publish_leave("chat:x", ALICE)
        await engine.publish_control(b'{"op":"disconnect","user":"bob"}')
        await engine.remove_presence("chat:x", "c1")  # left to expire, no error
        assert await engine.take_token("publish:alice", rate_per_second=1, burst=1) == 0.0
        kinds = [e.kind for e in handler.events]
        assert kinds == ["publication", "join", "leave", "control"]
        local = handler.events[0]
        assert local.publication is not None and local.publication.data == b'{"down":1}'
        assert local.publication.offset == 0 and local.publication.tags == {"k": "v"}
        assert local.position == StreamPosition(0, "")
        assert engine.local_fanouts == 4
        # What needs the shared state still fails, so callers answer "temporary".
        for call in (
            engine.history("chat:x", limit=-1),
            engine.presence("chat:x"),
            engine.presence_stats("chat:x"),
            engine.add_presence("chat:x", ALICE, ttl_seconds=30),
            engine.subscribe("chat:new"),
            engine.remove_history("chat:x"),
        ):
            with pytest.raises(EngineError):
                await call
        await engine.unsubscribe("chat:x")  # local bookkeeping only
    finally:
        await engine.close()
        redis.stop()


async def test_without_a_handler_the_failure_is_raised(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "no-handler-redis").start()
    engine = LocalFallbackEngine(RedisEngine(redis.url, prefix="degraded-nh", timeout=0.5))
    try:
        await engine.start(None)
        redis.kill()
        with pytest.raises(EngineError):
            await engine.publish("chat:x", b"1")
        with pytest.raises(EngineError):
            await engine.publish_control(b"{}")
    finally:
        await engine.close()
        redis.stop()
