"""The Redis engine's circuit breaker, on a real redis-server that is killed
and started again: repeated failures open the circuit (calls refused at once),
the readiness ping is never refused, and Redis coming back closes it - by a
trial call after the reset time, or at once by a successful ping."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from resonance_worker.engines import build_engine
from resonance_worker.engines.redis import RedisEngine
from resonance_worker.errors import EngineCircuitOpenError, EngineError
from resonance_worker.settings import WorkerSettings

from tests.harness.redis import RedisServer

pytestmark = pytest.mark.redis


def test_build_engine_passes_the_circuit_settings() -> None:
    engine = build_engine(WorkerSettings(engine="redis", redis_circuit_failures=3))
    assert isinstance(engine, RedisEngine) and engine._breaker is not None
    assert engine._breaker.failure_threshold == 3
    off = build_engine(WorkerSettings(engine="redis", redis_circuit_failures=0))
    assert isinstance(off, RedisEngine) and off._breaker is None


async def test_circuit_opens_fails_fast_and_closes_when_redis_is_back(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "circuit-redis").start()
    engine = RedisEngine(
        redis.url, prefix="circuit", timeout=0.5, circuit_failures=2, circuit_reset_seconds=0.5
    )
    try:
        await engine.start(None)
        assert await engine.take_token("k", rate_per_second=100, burst=100) == 0.0
        redis.kill()
        for _ in range(2):
            with pytest.raises(EngineError) as failure:
                await engine.history("chat:x", limit=1)
            assert not isinstance(failure.value, EngineCircuitOpenError)
        with pytest.raises(EngineCircuitOpenError, match="circuit open"):
            await engine.publish("chat:x", b"1")
        assert engine.short_circuited == 1
        with pytest.raises(EngineError) as probe:  # the probe is tried, and tells the truth
            await engine.ping()
        assert not isinstance(probe.value, EngineCircuitOpenError)

        await asyncio.to_thread(redis.start)
        await asyncio.sleep(0.6)  # past the reset time: one trial goes through and closes it
        for _ in range(50):
            try:
                await engine.presence_stats("chat:x")
                break
            except EngineError:
                await asyncio.sleep(0.2)
        assert await engine.presence_stats("chat:x") == (0, 0)

        redis.kill()
        for _ in range(3):
            with pytest.raises(EngineError):
                await engine.presence_stats("chat:x")
        await asyncio.to_thread(redis.start)
        for _ in range(50):  # a successful ping closes an open circuit at once
            try:
                await engine.ping()
                break
            except EngineError:
                await asyncio.sleep(0.2)
        assert await engine.presence_stats("chat:x") == (0, 0)
    finally:
        await engine.close()
        redis.stop()
