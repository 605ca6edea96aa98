"""Backup, wipe, restore — the procedure of docs/operator.md "Restore", followed end to end on real
processes: a password-protected Redis (AOF on) behind a worker with Neo4j, real SDK clients writing
channel history and reporting states; the backup command (what the operator's CronJob runs) takes an
RDB snapshot and the event log to S3 (real S3Proxy); Redis's data directory and the whole Neo4j
graph are wiped; ``restore-redis`` + ``rebuild-graph`` and a new worker bring back channel history
(offsets and epoch too) and a graph equal to before."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import neo4j
import pytest
import redis.asyncio as aioredis

from tests.harness.neo4j import Neo4jServer
from tests.harness.redis import RedisServer
from tests.harness.s3 import S3Server
from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients

pytestmark = [pytest.mark.redis, pytest.mark.neo4j]

PASSWORD = "backup-test-pw"
CHANNEL = "chat:backup"
USERS = ("rita", "sam")
START_S = 120.0
"""Workers of their own, with room to start on the shared 2-core box (the fixture allows 30 s)."""


def _backup_cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "resonance_worker.backup", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _graph(driver: neo4j.AsyncDriver) -> tuple[list[Any], list[Any]]:
    nodes, _, _ = await driver.execute_query("MATCH (n) RETURN labels(n) AS labels, properties(n) AS props")
    relations, _, _ = await driver.execute_query(
        "MATCH (a)-[r]->(b) RETURN type(r) AS type, properties(r) AS props, "
        "properties(a) AS a, properties(b) AS b"
    )
    key = lambda record: json.dumps(dict(record), sort_keys=True, default=str)  # noqa: E731
    return sorted(map(key, nodes)), sorted(map(key, relations))


async def _settled(driver: neo4j.AsyncDriver, redis_url: str) -> tuple[list[Any], list[Any]]:
    """The graph once nothing more is logged or projected: the log's length and the graph unchanged
    over a few seconds (longer than the living core's periodic room results)."""
    direct = aioredis.Redis.from_url(redis_url)
    try:
        before: object = None
        while True:
            now = (await _graph(driver), await direct.xlen("resonance.events"))
            if now == before:
                return now[0]
            before = now
            await asyncio.sleep(6.0)
    finally:
        await direct.aclose()


async def _history(worker: WorkerProcess) -> dict[str, Any]:
    status, body = await api_call(worker, "history", {"channel": CHANNEL, "limit": 100})
    assert status == 200, body
    result: dict[str, Any] = body["result"]
    return result


async def test_backup_wipe_restore_brings_back_history_and_graph(
    tmp_path: Path,
    neo4j_server: Neo4jServer,
    neo4j_driver: neo4j.AsyncDriver,
    clients: Clients,
) -> None:
    redis_dir = tmp_path / "redis"
    redis_server = await asyncio.to_thread(RedisServer(redis_dir, persistence=True, password=PASSWORD).start)
    s3 = await asyncio.to_thread(S3Server(tmp_path / "s3").start)
    restored: RedisServer | None = None
    worker: WorkerProcess | None = None
    after: WorkerProcess | None = None
    try:
        neo4j_env = {
            "RESONANCE_ENGINE": "redis",
            "RESONANCE_NEO4J__URI": neo4j_server.uri,
            "RESONANCE_NEO4J__USER": neo4j_server.user,
            "RESONANCE_NEO4J__PASSWORD": neo4j_server.password,
        }
        worker = WorkerProcess(
            tmp_path, {**neo4j_env, "RESONANCE_REDIS_URL": redis_server.url}, name="before"
        )
        await asyncio.to_thread(worker.start, START_S)
        for n in range(6):
            status, body = await api_call(worker, "publish", {"channel": CHANNEL, "data": {"n": n}})
            assert status == 200, body
        reporters = []
        for user in USERS:
            client, _ = await clients.connected(worker.ws_url, worker.token(user))
            reporters.append(client)
            await client.rpc("room.join", {"room": "backup-room"})
            for n in range(4):
                await client.rpc("state.report", {"valence": 0.1 * n, "arousal": 0.5, "label": f"{user}{n}"})

        async def states_projected(driver: neo4j.AsyncDriver, expected: int) -> None:
            while True:
                records, _, _ = await driver.execute_query("MATCH (s:State) RETURN count(s) AS n")
                if records[0]["n"] >= expected:
                    return
                await asyncio.sleep(0.3)

        await asyncio.wait_for(states_projected(neo4j_driver, 2 * 4), 60)
        for client in reporters:
            await client.rpc("room.leave", {"room": "backup-room"})  # no more periodic room results
        graph_before = await asyncio.wait_for(_settled(neo4j_driver, redis_server.url), 90)
        history_before = await _history(worker)
        assert len(history_before["publications"]) == 6 and graph_before[0] and graph_before[1]

        backup_env = {
            "RESONANCE_REDIS_URL": redis_server.url,
            "RESONANCE_BACKUP_CLUSTER": "demo",
            "RESONANCE_BACKUP_DESTINATION": "s3",
            "RESONANCE_BACKUP_PREFIX": "demo",
            "RESONANCE_BACKUP_S3_ENDPOINT": s3.endpoint,
            "RESONANCE_BACKUP_S3_BUCKET": "backups",
            "RESONANCE_BACKUP_RETENTION": "7d",
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        }
        taken = await asyncio.to_thread(_backup_cli, backup_env, "backup")
        assert taken["event_log"]["entries"] >= 8
        assert (await asyncio.to_thread(_backup_cli, backup_env, "list"))["complete"] == [taken["backup"]]

        # Lose everything: the worker, Redis's data directory, the whole graph.
        worker.stop()
        await asyncio.to_thread(redis_server.stop)
        shutil.rmtree(redis_dir)
        await neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
        assert await _graph(neo4j_driver) == ([], [])

        # docs/operator.md "Restore", step by step.
        out = await asyncio.to_thread(_backup_cli, backup_env, "restore-redis", "latest", str(redis_dir))
        assert out["restored"] == taken["backup"]
        restored = RedisServer(
            redis_dir, persistence=False, password=PASSWORD, extra_args=["--dbfilename", "dump.rdb"]
        )
        await asyncio.to_thread(restored.start)
        direct = aioredis.Redis.from_url(restored.url)
        try:
            await direct.config_set("appendonly", "yes")
        finally:
            await direct.aclose()
        restored_env = {**backup_env, "RESONANCE_REDIS_URL": restored.url}
        replay = await asyncio.to_thread(_backup_cli, restored_env, "rebuild-graph")
        assert replay["replaying"] == taken["event_log"]["entries"]
        after = WorkerProcess(tmp_path, {**neo4j_env, "RESONANCE_REDIS_URL": restored.url}, name="after")
        await asyncio.to_thread(after.start, START_S)

        assert await _history(after) == history_before
        await asyncio.wait_for(states_projected(neo4j_driver, 2 * 4), 60)

        # The projector replays the restored log into the empty graph.
        for _ in range(60):
            if await _graph(neo4j_driver) == graph_before:
                break
            await asyncio.sleep(0.5)
        else:
            nodes, relations = await _graph(neo4j_driver)
            assert (set(nodes) - set(graph_before[0]), set(graph_before[0]) - set(nodes)) == (set(), set())
            assert (set(relations) - set(graph_before[1]), set(graph_before[1]) - set(relations)) == (
                set(),
                set(),
            )
    finally:
        for process in (worker, after):
            if process is not None:
                await asyncio.to_thread(process.stop)
        if restored is not None:
            await asyncio.to_thread(restored.stop)
        await asyncio.to_thread(redis_server.stop)
        await asyncio.to_thread(s3.stop)
