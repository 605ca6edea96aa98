"""The harness's Redis is a real redis-server: commands, pub/sub, streams, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.harness.redis import RedisServer
from tests.harness.tls import make_tls

pytestmark = pytest.mark.redis


async def test_round_trip(redis_client: aioredis.Redis) -> None:
    await redis_client.set("greeting", "hello", ex=60)
    assert await redis_client.get("greeting") == b"hello"
    info = await redis_client.info("server")
    assert int(str(info["redis_version"]).split(".")[0]) >= 6


async def test_streams_and_pubsub(redis_client: aioredis.Redis, redis_server: RedisServer) -> None:
    first = await redis_client.xadd("s", {"d": "1"})
    second = await redis_client.xadd("s", {"d": "2"})
    entries = await redis_client.xrange("s", min=first)
    assert [e[0] for e in entries] == [first, second]

    subscriber = aioredis.Redis.from_url(redis_server.url)
    pubsub = subscriber.pubsub()
    try:
        await pubsub.subscribe("ch")
        assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
        await redis_client.publish("ch", b"ping")
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None
        assert message["data"] == b"ping"
    finally:
        await pubsub.aclose()
        await subscriber.aclose()


async def test_persistent_server_keeps_data_across_restart(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persistence=True).start()
    try:
        client = aioredis.Redis.from_url(server.url)
        await client.set("kept", "yes")
        await client.aclose()
        server.restart()
        client = aioredis.Redis.from_url(server.url)
        assert await client.get("kept") == b"yes"
        await client.aclose()
    finally:
        server.stop()
    assert not server.process.alive()


async def test_server_without_persistence_forgets_on_restart(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        client = aioredis.Redis.from_url(server.url)
        await client.set("lost", "yes")
        await client.aclose()
        server.restart()
        client = aioredis.Redis.from_url(server.url)
        assert await client.get("lost") is None
        await client.aclose()
    finally:
        server.stop()


async def test_a_tls_only_server_verifies_and_refuses_plain_text(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    server = RedisServer(tmp_path / "redis", tls=tls, password="tls-pw").start()
    try:
        assert server.url.startswith("rediss://")
        client = aioredis.Redis.from_url(server.url, ssl_ca_certs=str(tls.ca))
        await client.set("secret", "over tls")
        assert await client.get("secret") == b"over tls"
        await client.aclose()
        plain = aioredis.Redis(host=server.host, port=server.port, password="tls-pw", socket_timeout=2)
        with pytest.raises(RedisError):
            await plain.ping()
        await plain.aclose()
        untrusted = aioredis.Redis.from_url(server.url)  # the system CAs do not know ours
        with pytest.raises(RedisError, match="certificate verify failed"):
            await untrusted.ping()
        await untrusted.aclose()
    finally:
        server.stop()
