"""``resonance-worker`` with several processes on one port (RESONANCE_PROCESSES), for
real: the kernel spreads connections over them, the Redis engine connects them, and
SIGTERM reaches every one of them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients
from tests.worker.transport.test_sdk import subscribed


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except FileNotFoundError:  # closed between the listing and the read (a short-lived socket)
            continue
    return count


def wait_listening(pid: int, timeout: float = 20.0) -> None:
    """Until the process holds its listening socket and its Redis connections."""
    deadline = time.monotonic() + timeout
    while sockets(pid) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)


def gone(pids: list[int]) -> bool:
    return all(not Path(f"/proc/{pid}").exists() for pid in pids)


async def test_two_processes_share_the_port_and_the_channels(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    worker = WorkerProcess(
        tmp_path,
        {
            "RESONANCE_PROCESSES": "2",
            "RESONANCE_ENGINE": "redis",
            "RESONANCE_REDIS_URL": redis_server.url,
            "RESONANCE_REDIS_PREFIX": "test-processes",
            "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0",
        },
    ).start()
    clients = Clients()
    try:
        workers = children(worker.process.pid)
        assert len(workers) == 2
        for pid in workers:  # both must be ready, not just the one /ready happened to reach
            await asyncio.to_thread(wait_listening, pid)
        before = {pid: sockets(pid) for pid in workers}
        readers = []
        for n in range(24):
            client, _ = await clients.connected(worker.ws_url, worker.token(f"reader-{n}"))
            readers.append((await subscribed(client, "chat:shared"))[1])
        # SO_REUSEPORT hashes connections over both processes: each holds some of the 24.
        assert all(sockets(pid) > before[pid] for pid in workers), (before, workers)
        status, body = await api_call(worker, "publish", {"channel": "chat:shared", "data": {"to": "all"}})
        assert status == 200, body
        for events in readers:  # whichever process took the publish, every reader gets it
            ctx = await events.wait_for("publication")
            assert ctx.pub.data == {"to": "all"}
    finally:
        await clients.close()
        code = await asyncio.to_thread(worker.stop)
    assert code == 0
    assert await asyncio.to_thread(gone, workers)
