"""The PROXY protocol behind a real TCP proxy: Debian's nginx ``stream`` with ``proxy_protocol on`` in front
of a real worker process (``RESONANCE_PROXY_PROTOCOL``), clients from several loopback source addresses.
The worker counts each client's own address: a per-address limit refuses exactly the over-limit
connections of the one address that exceeds it. A bad header from the trusted proxy closes that
connection with a log line and the worker keeps serving; an untrusted peer's PROXY line is no address."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest

from tests.harness.nginx import STREAM_MODULE, NginxProxy, stream_proxy_conf
from tests.harness.worker import JWT_SECRET, WorkerProcess

PER_ADDRESS = 3

pytestmark = pytest.mark.skipif(
    not STREAM_MODULE.exists(), reason="nginx's stream module is missing: run `make deps`"
)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerProcess, NginxProxy]]:
    workdir = tmp_path_factory.mktemp("proxy-protocol")
    worker = WorkerProcess(
        workdir,
        {
            "RESONANCE_PROXY_PROTOCOL": "true",
            "RESONANCE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP": str(PER_ADDRESS),
        },
    ).start()
    nginx = NginxProxy(workdir / "nginx")
    try:
        nginx.start(stream_proxy_conf(nginx, f"127.0.0.1:{worker.port}"))
        yield worker, nginx
    finally:
        nginx.stop()
        worker.stop()


async def probe(url: str, per_address: dict[str, int]) -> tuple[Counter[str], dict[str, list[int]]]:
    """Open every connection at once and hold them all; count who got a connect reply, who was refused."""
    accepted: Counter[str] = Counter()
    refused: dict[str, list[int]] = {}
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
        for address in per_address
    ]
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def one(session: aiohttp.ClientSession, address: str, index: int) -> None:
        ws = await session.ws_connect(url)
        sockets.append(ws)
        token = jwt.encode({"sub": f"{address}-{index}"}, JWT_SECRET, algorithm="HS256")
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": token}}))
        message = await ws.receive(timeout=20)
        if message.type is aiohttp.WSMsgType.TEXT and '"connect"' in message.data:
            accepted[address] += 1
        else:
            refused.setdefault(address, []).append(int(ws.close_code or 0))

    try:
        await asyncio.gather(
            *(
                one(session, address, i)
                for session, (address, count) in zip(sessions, per_address.items(), strict=True)
                for i in range(count)
            )
        )
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    return accepted, refused


async def test_each_client_counts_as_its_own_address_through_the_proxy(
    proxied: tuple[WorkerProcess, NginxProxy],
) -> None:
    _, nginx = proxied
    # Through nginx every TCP peer is 127.0.0.1: without the header all 13 would share one limit of 3.
    per_address = {"127.0.0.2": PER_ADDRESS + 2, "127.0.0.3": PER_ADDRESS, "127.0.0.4": 2, "127.0.0.5": 3}
    accepted, refused = await probe(nginx.ws_url(), per_address)
    assert dict(accepted) == {
        "127.0.0.2": PER_ADDRESS,
        "127.0.0.3": PER_ADDRESS,
        "127.0.0.4": 2,
        "127.0.0.5": 3,
    }
    assert refused == {"127.0.0.2": [3504, 3504]}


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection to the worker and read until it closes (or 10 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


def test_a_bad_header_from_the_trusted_proxy_closes_that_connection_and_the_worker_serves_on(
    proxied: tuple[WorkerProcess, NginxProxy],
) -> None:
    worker, _ = proxied
    health = b"GET /health HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"
    bad = [
        b"PROXY TCP4 300.1.2.3 127.0.0.1 1 2\r\n" + health,
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + health,
        b"PROXY " + b"9" * 200,
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04" + health,
    ]
    for data in bad:
        assert raw_exchange(worker.port, data) == b"", data  # closed, nothing served
    # A valid v2 header, then a request: served, and the worker is alive for the plain probe after it.
    v2 = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", 12)
    v2 += socket.inet_aton("203.0.113.9") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 5555, 80)
    assert raw_exchange(worker.port, v2 + health).startswith(b"HTTP/1.1 200")
    assert raw_exchange(worker.port, health).startswith(b"HTTP/1.1 200")  # a probe without a header
    closed = [r for r in worker.log_records() if r.get("logger") == "resonance.worker.proxyproto"]
    assert [r["reason"].startswith("bad PROXY protocol header") for r in closed] == [True] * len(bad)
    assert {r["peer"] for r in closed} == {"127.0.0.1"}
    assert "Traceback" not in worker.log()


def test_an_untrusted_peer_cannot_name_an_address_with_a_proxy_line(tmp_path: Path) -> None:
    # Trusting only a network the test's peer is not in: a PROXY line is then HTTP garbage (400).
    worker = WorkerProcess(
        tmp_path, {"RESONANCE_PROXY_PROTOCOL": "true", "RESONANCE_TRUSTED_PROXIES": '["10.255.0.0/16"]'}
    ).start()
    try:
        health = b"GET /health HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"
        answer = raw_exchange(worker.port, b"PROXY TCP4 203.0.113.9 127.0.0.1 1 2\r\n" + health)
        assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer[:200]
        assert raw_exchange(worker.port, health).startswith(b"HTTP/1.1 200")
    finally:
        worker.stop()


def test_settings_refuse_proxy_protocol_without_trusted_proxies() -> None:
    from pydantic import ValidationError
    from resonance_worker.settings import WorkerSettings

    with pytest.raises(ValidationError, match="proxy_protocol needs trusted_proxies"):
        WorkerSettings(proxy_protocol=True, trusted_proxies=[])


async def test_in_process_the_site_yields_the_header_source_and_drops_slow_or_pending_headers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from aiohttp import web
    from resonance_worker.transport import proxyproto

    async def remote(request: web.Request) -> web.Response:
        return web.Response(text=str(request.remote))

    monkeypatch.setattr(proxyproto, "HEADER_SECONDS", 0.3)
    app = web.Application()
    app.router.add_get("/remote", remote)
    runner = web.AppRunner(app)
    await runner.setup()
    site = proxyproto.ProxyProtocolSite(runner, "127.0.0.1", 0, trusted_proxies=["127.0.0.1/32"])
    await site.start()
    port = runner.addresses[0][1]
    request = b"GET /remote HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"

    async def exchange(data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer

    try:
        assert (await exchange(b"PROXY TCP4 192.0.2.7 10.0.0.1 4000 80\r\n" + request)).endswith(b"192.0.2.7")
        assert (await exchange(b"PROXY UNKNOWN\r\n" + request)).endswith(b"127.0.0.1")
        assert (await exchange(request)).endswith(b"127.0.0.1")  # no header from a trusted peer
        with caplog.at_level("WARNING", logger="resonance.worker.proxyproto"):
            assert await exchange(b"PROXY TCP4 192.0.2.7") == b""  # never completed: closed
        assert "no complete PROXY protocol header within 0.3 s" in caplog.text
        # A connection still waiting for its header when the site stops is closed with it.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PROXY ")
        await writer.drain()
        # Until the server has taken it (the pending set is what stop() empties; it has no event to await).
        while not site._pending:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await site.stop()
        assert not site._pending
        with contextlib.suppress(ConnectionResetError):  # a reset is as closed as an end of file
            assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    finally:
        await runner.cleanup()
