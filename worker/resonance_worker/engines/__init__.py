"""Engines keep channel state: the in-memory engine serves one node, the Redis
engine lets many worker pods behave as one server. This package is the only
place that imports ``redis``."""

from __future__ import annotations

from resonance_worker.engines.base import Engine
from resonance_worker.engines.degraded import LocalFallbackEngine
from resonance_worker.engines.memory import MemoryEngine
from resonance_worker.engines.redis import RedisEngine
from resonance_worker.settings import EngineKind, WorkerSettings

__all__ = ["Engine", "LocalFallbackEngine", "MemoryEngine", "RedisEngine", "build_engine"]


def build_engine(settings: WorkerSettings) -> Engine:
    """The engine the settings ask for, not yet started."""
    if settings.engine is EngineKind.REDIS:
        redis = RedisEngine(
            settings.redis_url,
            prefix=settings.redis_prefix,
            circuit_failures=settings.redis_circuit_failures,
            circuit_reset_seconds=settings.redis_circuit_reset_seconds,
        )
        return LocalFallbackEngine(redis) if settings.degraded_local_fanout else redis
    return MemoryEngine()
