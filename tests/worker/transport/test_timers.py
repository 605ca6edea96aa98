"""The sessions' shared timers on a real worker whose event loop runs late: a deadline that judges the
client (the pong) is judged after the sockets were read, so a stopped or starved worker does not close
clients that answered in time - and a client that did not answer is still closed 3012."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator

import pytest

from bench.load import wsframes
from tests.harness.worker import WorkerProcess
from tests.worker.transport.test_ws_shells import RawSocket

PONG_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def pinging_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker that pings every second and waits a second for the pong."""
    process = WorkerProcess(
        tmp_path_factory.mktemp("timers"),
        {
            "RESONANCE_PING_INTERVAL_SECONDS": "1",
            "RESONANCE_PONG_TIMEOUT_SECONDS": str(PONG_TIMEOUT_S),
            "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
            "RESONANCE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        },
        name="timers",
    ).start()
    yield process
    process.stop()


async def connected_until_a_ping(worker: WorkerProcess, user: str) -> RawSocket:
    sock = await RawSocket.open(worker, "10.3.0.1")
    reply = await sock.connect(worker.token(user))
    assert "connect" in reply, reply
    while True:  # the JSON protocol's ping is an empty message
        opcode, payload = await sock.next()
        if opcode == 0x1 and json.loads(payload) == {}:
            return sock


def pong() -> bytes:
    return wsframes.encode_frame(0x1, b"{}")


async def stopped_past_the_pong_deadline(worker: WorkerProcess) -> None:
    """SIGSTOP the worker for twice the pong timeout: to its loop, every deadline is then overdue."""
    os.kill(worker.process.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(2 * PONG_TIMEOUT_S)
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)


async def test_a_pong_that_arrived_while_the_worker_was_stopped_keeps_the_client(
    pinging_worker: WorkerProcess,
) -> None:
    sock = await connected_until_a_ping(pinging_worker, "in-time")
    stop = asyncio.ensure_future(stopped_past_the_pong_deadline(pinging_worker))
    await asyncio.sleep(0.2)  # stopped now; the pong reaches the worker's socket in time, unread
    sock.writer.write(pong())
    await stop
    # Two more ping rounds, each answered: the connection lives on (the old timers closed it 3012 at once).
    for _ in range(2):
        while True:
            opcode, payload = await sock.next()
            assert opcode != 0x8, f"closed: {payload!r}"
            if opcode == 0x1 and json.loads(payload) == {}:
                sock.writer.write(pong())
                break
    sock.close()


async def test_a_client_that_did_not_answer_is_still_closed_3012(pinging_worker: WorkerProcess) -> None:
    sock = await connected_until_a_ping(pinging_worker, "silent")
    await stopped_past_the_pong_deadline(pinging_worker)
    assert await sock.close_code() == (3012, "no pong")
    sock.close()
