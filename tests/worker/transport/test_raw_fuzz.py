"""Raw WebSocket fuzzing of a real worker process: hundreds of connections send
malformed frames (random bytes, invalid UTF-8, broken and deeply nested JSON,
wrong types, huge numbers, oversized messages) while a centrifuge-python client
keeps receiving a steady stream of publications. Bounded (a fixed number of
seeded cases) and self-stopping."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients
from tests.worker.transport.test_sdk import subscribed

CASES = 300
OVERSIZED = 65536  # the worker's default RESONANCE_LIMITS__MAX_MESSAGE_BYTES
SEED = 20261125
# Close codes a fuzzing client may get: bad request (3501), message too big
# (1009), invalid UTF-8 (1007), protocol error (1002), rate limits (3013),
# stale (3502), invalid token (3500), normal closure when the server already closed (1000),
# too many errors (3509: the fuzzer's user floods the thyroid and its connections are cut off).
EXPECTED_CLOSES = {1000, 1002, 1007, 1009, 3500, 3501, 3013, 3502, 3509}


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**63, 2**70, 1e308, -1e-308])
    if kind == 2:
        return "".join(rng.choice('ab#$:,\\"\u0000\u2028\U0001f600') for _ in range(rng.randrange(12)))
    if kind in (3, 4):
        return rng.choice(["connect", "subscribe", "publish", "rpc", "history", "presence", "refresh"])
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["id", "connect", "subscribe", "publish", "rpc", "channel", "data", "token", "offset", "x"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def fuzz_frame(rng: random.Random, token: str) -> tuple[WSMsgType, bytes]:
    choice = rng.randrange(10)
    if choice == 0:
        return WSMsgType.BINARY, rng.randbytes(rng.randrange(1, 200))
    if choice == 1:  # not UTF-8
        return WSMsgType.TEXT, b'{"id": 1, "rpc": {"data": "\xff\xfe\xc3\x28"}}'
    if choice == 2:
        depth = rng.choice([100, 1000, 5000])
        return WSMsgType.TEXT, (b"[" * depth + b"]" * depth)
    if choice == 3:  # larger than the worker's message limit
        return WSMsgType.TEXT, b'{"id": 1, "rpc": {"data": "' + b"x" * (OVERSIZED + 10) + b'"}}'
    if choice == 4:
        return WSMsgType.TEXT, json.dumps(_random_json(rng)).encode()
    if choice == 5:  # connect first, then garbage after it in the same frame
        lines = [json.dumps({"id": 1, "connect": {"token": token}})]
        lines += [json.dumps(_random_json(rng)) for _ in range(rng.randrange(1, 4))]
        return WSMsgType.TEXT, "\n".join(lines).encode()
    if choice == 6:
        return WSMsgType.TEXT, rng.randbytes(rng.randrange(1, 100)).decode("latin-1").encode()
    if choice == 7:
        cmd = {"id": rng.choice([1, 2**32, 2**64, -1, "1", None]), "connect": {"token": token}}
        return WSMsgType.TEXT, json.dumps(cmd).encode()
    if choice == 8:
        return WSMsgType.TEXT, b'{"id": 1, "connect": {"token": "' + rng.randbytes(30).hex().encode() + b'"}}'
    return WSMsgType.TEXT, b'{"id": 1, "connect": {"token": 12345, "data": {"a": [1, {"b": null}]}}}'


async def fuzz_one(http: aiohttp.ClientSession, url: str, rng: random.Random, token: str) -> str:
    """Send one to three fuzz frames; the outcome: a close code, or still open."""
    async with http.ws_connect(url, autoclose=False, max_msg_size=0) as ws:
        sent = []
        for _ in range(rng.randrange(1, 4)):
            kind, data = fuzz_frame(rng, token)
            sent.append(len(data))
            try:
                await ws.send_frame(data, kind)
            except (ConnectionResetError, RuntimeError):
                break
        answered = False
        while True:
            try:
                message = await ws.receive(timeout=2)
            except TimeoutError:
                # Still open: it was answered (a connect went through) or needed no answer (an
                # empty command is a pong); the connect deadline would close it later.
                await ws.close()
                return "answered, open" if answered else "silent, open"
            if message.type is WSMsgType.TEXT:
                answered = True
                continue
            if message.type is WSMsgType.CLOSE:
                await ws.close()
                return f"close {message.data}"
            if ws.close_code == 1006 and len(sent) > 1:
                # It kept writing after the server's close (3501, 1007, 1009), so the socket
                # was reset before the close frame was read.
                return "reset: kept writing after the close"
            return f"close {ws.close_code}"


async def test_raw_websocket_fuzz_leaves_other_clients_unaffected(
    start_worker: Callable[..., WorkerProcess], clients: Clients
) -> None:
    # The living core is on: every fuzz case comes from one address, whose pain is capped, so the
    # thyroid never sheds a new connection and every case reaches the protocol parser.
    worker = start_worker({"RESONANCE_LIMITS__USER_PUBLISH_RATE": "0"})
    steady, _ = await clients.connected(worker.ws_url, worker.token("steady"))
    _, events = await subscribed(steady, "chat:steady-under-fuzz")
    stop = asyncio.Event()
    published: list[int] = []

    async def publish_steadily() -> None:
        n = 0
        while not stop.is_set() and n < 400:
            n += 1
            status, _ = await api_call(
                worker, "publish", {"channel": "chat:steady-under-fuzz", "data": {"n": n}}
            )
            assert status == 200
            published.append(n)
            await asyncio.sleep(0.02)

    publisher = asyncio.create_task(publish_steadily())
    rng = random.Random(SEED)
    outcomes: dict[str, int] = {}
    token = worker.token("fuzzer")
    async with aiohttp.ClientSession() as http:
        for _ in range(CASES):
            outcome = await asyncio.wait_for(fuzz_one(http, worker.ws_url, rng, token), 20)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    stop.set()
    await publisher
    received: list[int] = []
    while len(received) < len(published):
        received.append((await events.wait_for("publication", timeout=10)).pub.data["n"])
    assert received == published  # all of them, in order, during and after the fuzz
    codes = {int(o.split()[1]) for o in outcomes if o.startswith("close") and o.split()[1] != "None"}
    assert codes <= EXPECTED_CLOSES, outcomes
    assert sum(outcomes.values()) == CASES and len(outcomes) >= 4, outcomes
    assert (await asyncio.to_thread(worker.http, "GET", "/health"))[0] == 200
    code, thyroid = await asyncio.to_thread(worker.http, "GET", "/thyroid/status")
    assert code == 200 and thyroid["state"] == "calm" and thyroid["pain"] <= 2.5 + 1e-6
    # New connections are still accepted after the fuzz.
    late, _ = await clients.connected(worker.ws_url, worker.token("late"))
    assert (await late.rpc("echo", 1)).data == 1
    assert not [r for r in worker.log_records() if r.get("level") in ("error", "critical")]
    assert "Traceback" not in worker.log()
    print("raw fuzz outcomes:", dict(sorted(outcomes.items())))
