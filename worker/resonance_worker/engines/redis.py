"""The Redis engine: state shared by many worker pods through one Redis."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from resonance_worker.engines.base import EngineEventHandler
from resonance_worker.errors import EngineError, EngineTimeoutError


class RedisEngine:
    """Talks to Redis; ``ping`` tells readiness."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "resonance", timeout: float = 2.0) -> None:
        self._url = url
        self.prefix = prefix
        self._timeout = timeout
        self._client: aioredis.Redis | None = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise EngineError("redis engine used before start()")
        return self._client

    async def start(self, handler: EngineEventHandler | None = None) -> None:
        self._client = aioredis.Redis.from_url(
            self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except RedisTimeoutError as exc:
            raise EngineTimeoutError(f"redis ping timed out: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise EngineError(f"redis unreachable: {exc}") from exc
