"""The durable, replayable event log of the living core (see docs/living-core.md).

``RedisEventLog`` (a Redis Stream with a consumer group) for clusters,
``MemoryEventLog`` with the same interface for the single-node memory mode.
The Redis module is imported lazily, so the memory mode never loads redis.
"""

from __future__ import annotations

from resonance_worker.eventlog.base import (
    DEFAULT_GROUP,
    ClaimResult,
    EventLog,
    EventLogError,
    EventLogInputError,
    EventLogTimeoutError,
    LogEntry,
    LogLag,
    Retention,
)
from resonance_worker.eventlog.memory import MemoryEventLog

__all__ = [
    "DEFAULT_GROUP",
    "ClaimResult",
    "EventLog",
    "EventLogError",
    "EventLogInputError",
    "EventLogTimeoutError",
    "LogEntry",
    "LogLag",
    "MemoryEventLog",
    "Retention",
]
