"""``build_engine`` picks the engine the settings ask for."""

from __future__ import annotations

from resonance_worker.engines import MemoryEngine, RedisEngine, build_engine
from resonance_worker.settings import EngineKind, WorkerSettings


def test_memory_is_the_default() -> None:
    assert isinstance(build_engine(WorkerSettings()), MemoryEngine)


def test_redis_with_its_url_and_prefix() -> None:
    engine = build_engine(
        WorkerSettings(engine=EngineKind.REDIS, redis_url="redis://127.0.0.1:1/0", redis_prefix="cluster-7")
    )
    assert isinstance(engine, RedisEngine)
    assert engine.prefix == "cluster-7"
