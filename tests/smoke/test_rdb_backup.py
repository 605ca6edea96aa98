"""The Redis side of backup and restore, with the real tools the backup Job uses.

Backup: ``redis-cli --rdb FILE`` asks a (replica) node for a full sync and writes the snapshot it sends:
a consistent point in time, over the network, with the password, and without touching the node's disk.
Restore: the file becomes ``dump.rdb`` in a fresh server's data directory, started with AOF off (a server
with AOF on would load its empty AOF instead); then ``CONFIG SET appendonly yes`` writes an AOF from the
loaded data, so later restarts keep it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.harness.redis import RedisServer, redis_binary
from tests.harness.sentinel import SentinelRedis

pytestmark = pytest.mark.redis


async def test_rdb_from_a_replica_restores_streams_hashes_and_ttls(tmp_path: Path) -> None:
    password = "backup-pw-1"
    deployment = await asyncio.to_thread(
        SentinelRedis(tmp_path / "source", replicas=1, sentinels=1, quorum=1, password=password).start
    )
    try:
        primary = aioredis.Redis(
            host=deployment.primary().host, port=deployment.primary().port, password=password
        )
        for n in range(1, 51):
            await primary.xadd("resonance.stream.chat", {"d": f"message {n}"}, id=f"{n}-0")
        await primary.hset("resonance.meta.chat", mapping={"e": "abcd1234", "s": "50"})
        await primary.pexpire("resonance.meta.chat", 3_600_000)
        await primary.xadd("resonance.events", {"e": '{"type":"state.changed"}'})
        await primary.wait(1, 2000)
        before = {k: await primary.dump(k) for k in await primary.keys("*")}
        await primary.aclose()

        replica = next(n for n in deployment.nodes if n.address != deployment.primary_address())
        snapshot = tmp_path / "backup" / "redis.rdb"
        snapshot.parent.mkdir()
        cli = await asyncio.create_subprocess_exec(
            redis_binary("redis-cli"), "-h", replica.host, "-p", str(replica.port), "--rdb", str(snapshot),
            env={**os.environ, "REDISCLI_AUTH": password},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(cli.communicate(), timeout=60)
        assert cli.returncode == 0, output.decode()
        assert snapshot.read_bytes().startswith(b"REDIS")
    finally:
        deployment.stop()

    target_dir = tmp_path / "restored"
    target_dir.mkdir()
    shutil.copy(snapshot, target_dir / "dump.rdb")
    restored = RedisServer(target_dir, persistence=False, extra_args=["--dbfilename", "dump.rdb"]).start()
    try:
        client = aioredis.Redis.from_url(restored.url)
        assert {k: await client.dump(k) for k in await client.keys("*")} == before
        entries = await client.xrange("resonance.stream.chat")
        assert [e[0] for e in entries] == [f"{n}-0".encode() for n in range(1, 51)]
        assert 0 < await client.pttl("resonance.meta.chat") <= 3_600_000
        # Persistence on from here: the AOF is written from the loaded data.
        await client.config_set("appendonly", "yes")
        for _ in range(100):
            if (await client.info("persistence"))["aof_rewrite_in_progress"] == 0 and list(
                target_dir.glob("appendonlydir/*.base.rdb")
            ):
                break
            await asyncio.sleep(0.1)
        await client.aclose()
    finally:
        restored.stop()
    again = RedisServer(target_dir, persistence=True).start()
    try:
        client = aioredis.Redis.from_url(again.url)
        assert await client.xlen("resonance.stream.chat") == 50
        await client.aclose()
    finally:
        again.stop()
