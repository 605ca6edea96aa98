"""The in-memory engine: all state in this process, for single-node use."""

from __future__ import annotations

from resonance_worker.engines.base import EngineEventHandler


class MemoryEngine:
    """Keeps everything in process memory. Always ready while the process runs."""

    name = "memory"

    async def start(self, handler: EngineEventHandler | None = None) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None
