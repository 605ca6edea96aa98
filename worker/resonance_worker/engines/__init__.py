"""Engines keep channel state: the in-memory engine serves one node, the Redis
engine lets many worker pods behave as one server. This package is the only
place that imports ``redis``."""

from __future__ import annotations

from resonance_worker.engines.base import Engine
from resonance_worker.engines.degraded import LocalFallbackEngine
from resonance_worker.engines.memory import MemoryEngine
from resonance_worker.engines.redis import RedisEngine
from resonance_worker.redis_client import RedisConnector
from resonance_worker.settings import EngineKind, RedisMode, WorkerSettings

__all__ = ["Engine", "LocalFallbackEngine", "MemoryEngine", "RedisEngine", "build_engine"]


def build_engine(settings: WorkerSettings, connector: RedisConnector | None = None) -> Engine:
    """The engine the settings ask for, not yet started (``connector``: where Redis is, when the
    caller shares it with the event log; else built from the settings)."""
    if settings.engine is EngineKind.REDIS:
        redis = RedisEngine(
            connector or RedisConnector.from_settings(settings),
            prefix=settings.redis_prefix,
            circuit_failures=settings.redis_circuit_failures,
            circuit_reset_seconds=settings.redis_circuit_reset_seconds,
            durability=settings.redis_durability,
            replica_wait_ms=settings.redis_replica_wait_ms,
            # Standalone: redis-py's one quick retry, as before; a failover needs the engine's own.
            failover_retry_seconds=(
                settings.redis_failover_retry_seconds
                if settings.redis_mode is not RedisMode.STANDALONE
                else 0.0
            ),
        )
        return LocalFallbackEngine(redis) if settings.degraded_local_fanout else redis
    return MemoryEngine()
