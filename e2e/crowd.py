"""Crowds of clients through the loopback ingress: thousands from hundreds of source addresses, bounded.

Two drivers, both self-stopping (every phase and every wait has a deadline) and both talking the
Centrifugo protocol to the workers through nginx (``e2e/ingress.py``):

* :func:`chat_crowd` - ``bench.load``'s chat scenario (its raw WebSocket client in load processes, the
  source addresses ``127.0.0.2 …``): every client connects, subscribes to a 50-member room, each room gets
  a publication a second; returns how many connected, subscribed and received. For the "≥ 2,000 clients
  from ≥ 200 addresses" e2e.
* :func:`address_probe` - opens ``per_address[a]`` connections from each source address ``a`` at once and
  reports, per address, how many were accepted and how many refused (HTTP 503 or a close code such as
  3504): to check that a per-address limit refuses exactly the over-limit connections of one address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp
import jwt

from bench.load import runner
from bench.load.scenario import Target, chat_scenario


def chat_crowd(
    *,
    ws_url: str,
    connect_to: str,
    token_secret: str,
    connections: int = 2000,
    source_addresses: int = 200,
    seconds: float = 3.0,
    processes: int = 2,
    server_pids: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Run the chat scenario through the proxy; the ``bench.load`` result document."""
    scenario = chat_scenario(
        connections,
        source_addresses=source_addresses,
        seconds=seconds,
        processes=processes,
        connect_concurrency=100,
        connect_timeout_s=180,
        settle_s=0.5,
        drain_s=2.0,
    )
    target = Target(
        name="through-ingress",
        ws_urls=(ws_url,),
        connect_to=connect_to,
        token_secret=token_secret,
        server_pids=server_pids,
    )
    return runner.run(scenario, target)


@dataclasses.dataclass
class ProbeResult:
    """Per source address: connections accepted (connect reply) and refused (by status or close code)."""

    accepted: Counter[str] = dataclasses.field(default_factory=Counter)
    refused: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def refused_count(self, address: str) -> int:
        return len(self.refused.get(address, []))


async def address_probe(
    *,
    connect_to: str,
    host: str,
    token_secret: str,
    per_address: Mapping[str, int],
    timeout: float = 30.0,
    hold_seconds: float = 1.0,
) -> ProbeResult:
    """Open the connections (all of them held open together), classify each, then close them all."""
    result = ProbeResult()
    sessions: list[aiohttp.ClientSession] = []
    # Every accepted socket is referenced until the end: one nothing refers to is collected, and its
    # connection closed, at once - freeing its slot, so a limit would never see them together.
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    url = f"ws://{connect_to}/connection/websocket"
    started = time.monotonic()

    async def one(address: str, index: int) -> None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=0))
        sessions.append(session)
        try:
            ws = await session.ws_connect(
                url, headers={"Host": host}, timeout=aiohttp.ClientWSTimeout(ws_close=5)
            )
        except aiohttp.WSServerHandshakeError as refused:
            result.refused.setdefault(address, []).append(refused.status)
            return
        sockets.append(ws)
        token = jwt.encode({"sub": f"probe-{address}-{index}"}, token_secret, algorithm="HS256")
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": token}}))
        message = await ws.receive(timeout=timeout)
        if message.type is aiohttp.WSMsgType.TEXT and '"connect"' in message.data:
            result.accepted[address] += 1
        else:
            result.refused.setdefault(address, []).append(int(ws.close_code or 0))

    tasks = [one(address, i) for address, count in per_address.items() for i in range(count)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        # Held open together, so a limit counts them all at once; then let go.
        await asyncio.sleep(max(0.0, hold_seconds - (time.monotonic() - started)))
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    return result
