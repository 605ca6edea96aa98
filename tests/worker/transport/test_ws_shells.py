"""Both WebSocket shells (``websocket_server``: ``native``, the default, and ``aiohttp``, the reference)
against raw sockets: each handshake refusal with its HTTP status and message, the frames a client
may and may not send, and what the native listener hands to aiohttp - answered as aiohttp answers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import Callable, Iterator

import pytest

from bench.load import wsframes
from tests.harness.worker import API_KEY, WorkerProcess, api_call
from tests.worker.transport.conftest import Clients
from tests.worker.transport.test_sdk import subscribed

StartWorker = Callable[..., WorkerProcess]

SHELLS = ["native", "aiohttp"]


@pytest.fixture(scope="module", params=SHELLS)
def shell_worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker of each shell behind a trusted "proxy" (the tests, on 127.0.0.1, name each client's
    address in X-Forwarded-For), with 10.9.9.0/24 denied and two connections per address."""
    process = WorkerProcess(
        tmp_path_factory.mktemp(f"shell-{request.param}"),
        {
            "RESONANCE_WEBSOCKET_SERVER": request.param,
            "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
            "RESONANCE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "RESONANCE_IP_DENY": '["10.9.9.0/24"]',
            "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP": "2",
            "RESONANCE_LIMITS__MAX_MESSAGE_BYTES": "1024",
        },
        name=f"shell-{request.param}",
    ).start()
    yield process
    process.stop()


def upgrade_request(port: int, *, path: str = "/connection/websocket", key: str, headers: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    ).encode()


async def exchange(port: int, request: bytes) -> tuple[str, bytes]:
    """Send ``request`` on a new connection; the response's status line and body (read to its end)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            (int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0
        )
        body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
        return lines[0], body
    finally:
        writer.close()


class RawSocket:
    """A WebSocket opened by hand: frames as the test writes them, frames as the server sent them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = wsframes.FrameParser()
        self.frames = self.parser.feed(rest)

    @classmethod
    async def open(cls, worker: WorkerProcess, address: str, query: str = "") -> RawSocket:
        key = base64.b64encode(os.urandom(16)).decode()
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.port)
        path = "/connection/websocket" + query
        writer.write(
            upgrade_request(worker.port, path=path, key=key, headers=f"X-Forwarded-For: {address}\r\n")
        )
        head = b""
        while (length := wsframes.parse_handshake_response(head, key)) is None:
            head += await asyncio.wait_for(reader.read(4096), 5)
        return cls(reader, writer, head[length:])

    async def next(self) -> tuple[int, bytes]:
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            if not data:
                raise ConnectionError("closed without a frame")
            self.frames += self.parser.feed(data)
        return self.frames.pop(0)

    async def close_code(self) -> tuple[int, str]:
        while True:
            opcode, payload = await self.next()
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    async def connect(self, token: str) -> dict[str, object]:
        self.writer.write(
            wsframes.encode_frame(0x1, json.dumps({"id": 1, "connect": {"token": token}}).encode())
        )
        opcode, payload = await self.next()
        assert opcode == 0x1
        return json.loads(payload)

    def close(self) -> None:
        self.writer.close()


# -- refusals before the upgrade: the same status and message from both shells ---------------------


@pytest.mark.parametrize(
    ("headers", "path", "status", "error"),
    [
        ("X-Forwarded-For: 10.9.9.9\r\n", "", 403, "address not allowed"),
        (
            "Origin: https://evil.example\r\n",
            "",
            403,
            "origin 'https://evil.example' is not allowed (allowed_origins)",
        ),
        ("Sec-WebSocket-Protocol: mqtt\r\n", "", 400, "no subprotocol offered ('mqtt') is spoken here"),
        ("", "?format=xml", 400, "format='xml' is not spoken here"),
    ],
)
async def test_a_refused_handshake_gets_its_status_and_message(
    shell_worker: WorkerProcess, headers: str, path: str, status: int, error: str
) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    request = upgrade_request(
        shell_worker.port, path="/connection/websocket" + path, key=key, headers=headers
    )
    line, body = await exchange(shell_worker.port, request)
    assert line.split(" ", 2)[1] == str(status), (line, body)
    assert json.loads(body)["error"].startswith(error)


async def test_over_the_limit_per_address_is_closed_3504_after_the_upgrade(
    shell_worker: WorkerProcess,
) -> None:
    held = [await RawSocket.open(shell_worker, "10.1.1.1") for _ in range(2)]
    third = await RawSocket.open(shell_worker, "10.1.1.1")
    assert await third.close_code() == (3504, "connection limit")
    other = await RawSocket.open(shell_worker, "10.1.1.2")  # another address is not counted with them
    assert "connect" in await other.connect(shell_worker.token("other"))
    for sock in [*held, third, other]:
        sock.close()


# -- frames --------------------------------------------------------------------------------------


async def test_a_fragmented_command_pings_and_a_clean_close(shell_worker: WorkerProcess) -> None:
    sock = await RawSocket.open(shell_worker, "10.2.0.1")
    command = json.dumps({"id": 1, "connect": {"token": shell_worker.token("frag")}}).encode()
    half = len(command) // 2
    sock.writer.write(
        struct.pack("!BB", 0x01, 0x80 | half)
        + b"\0\0\0\0"
        + command[:half]  # text, not final
        + wsframes.encode_frame(0x9, b"are you there")  # a ping between the fragments
        + struct.pack("!BB", 0x80, 0x80 | (len(command) - half))
        + b"\0\0\0\0"
        + command[half:]
    )
    assert await sock.next() == (0xA, b"are you there")
    opcode, payload = await sock.next()
    assert opcode == 0x1 and "connect" in json.loads(payload)
    sock.writer.write(wsframes.encode_frame(0x8, wsframes.close_payload(1000, "bye")))
    assert (await sock.close_code())[0] == 1000  # answered
    assert await asyncio.wait_for(sock.reader.read(), 5) == b""  # and the server ends the connection
    sock.close()


async def test_frames_sent_with_the_upgrade_request_are_read(shell_worker: WorkerProcess) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", shell_worker.port)
    connect = {"id": 1, "connect": {"token": shell_worker.token("eager")}}
    request = upgrade_request(shell_worker.port, key=key, headers="X-Forwarded-For: 10.5.0.1\r\n")
    writer.write(request + wsframes.encode_frame(0x1, json.dumps(connect).encode()))  # one write
    head = b""
    while (length := wsframes.parse_handshake_response(head, key)) is None:
        head += await asyncio.wait_for(reader.read(4096), 5)
    sock = RawSocket(reader, writer, head[length:])
    opcode, payload = await sock.next()
    assert opcode == 0x1 and "connect" in json.loads(payload)
    sock.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (wsframes.encode_frame(0x2, b"x" * 2000), 1009),
        (wsframes.encode_frame(0x1, b"\xff\xfe"), 1007),
        # Unmasked: RFC 6455 5.1 says the server MUST close; aiohttp's reader lets it through (the
        # session then refuses "{}" as a bad request), the native reader closes 1002.
        (struct.pack("!BB", 0x81, 2) + b"{}", {"native": 1002, "aiohttp": 3501}),
    ],
)
async def test_a_frame_a_client_may_not_send_closes_with_its_code(
    shell_worker: WorkerProcess, frame: bytes, code: int | dict[str, int]
) -> None:
    if isinstance(code, dict):
        code = code[shell_worker.env["RESONANCE_WEBSOCKET_SERVER"]]
    sock = await RawSocket.open(shell_worker, "10.3.0.1")
    assert "connect" in await sock.connect(shell_worker.token("bad-frames"))
    sock.writer.write(frame)
    assert (await sock.close_code())[0] == code
    sock.close()


async def test_the_server_api_disconnect_reaches_a_raw_socket_with_its_code(
    shell_worker: WorkerProcess,
) -> None:
    sock = await RawSocket.open(shell_worker, "10.4.0.1")
    assert "connect" in await sock.connect(shell_worker.token("kicked"))
    status, _ = await api_call(shell_worker, "disconnect", {"user": "kicked", "code": 3011, "reason": "bye"})
    assert status == 200
    assert await sock.close_code() == (3011, "bye")
    sock.writer.write(wsframes.encode_frame(0x8, wsframes.close_payload(3011)))
    assert await asyncio.wait_for(sock.reader.read(), 5) == b""
    sock.close()


async def test_the_sdk_chats_and_recovers_through_either_shell(
    shell_worker: WorkerProcess, clients: Clients
) -> None:
    """centrifuge-python: connect, subscribe, publish, a forced reconnect with recovery (the other SDKs run
    through the default shell in test_js_sdk.py and test_official_sdks.py)."""
    alice, alice_client = await clients.connected(shell_worker.ws_url, shell_worker.token("alice-shell"))
    bob, _ = await clients.connected(shell_worker.ws_url, shell_worker.token("bob-shell"))
    _, alice_events = await subscribed(alice, "chat:shells")
    bob_sub, _ = await subscribed(bob, "chat:shells")
    await bob_sub.publish({"n": 1})
    assert (await alice_events.wait_for("publication")).pub.data == {"n": 1}
    status, _ = await api_call(
        shell_worker, "disconnect", {"user": "alice-shell", "code": 3011, "reason": "x"}
    )
    assert status == 200
    await alice_client.wait_code("connecting", 3011)
    await alice_client.wait_for("connected")
    await alice_events.wait_for("subscribed")  # subscribed again after the reconnect
    await bob_sub.publish({"n": 2})
    assert (await alice_events.wait_for("publication")).pub.data == {"n": 2}


async def test_while_draining_a_handshake_gets_503(shell_worker: WorkerProcess) -> None:
    """Last for each shell: the worker drains."""
    status, _ = await asyncio.to_thread(
        shell_worker.http,
        "POST",
        "/drain",
        {"budget_per_second": 1, "window_seconds": 0, "remaining_threshold": 0, "deadline_seconds": 30},
        {"Content-Type": "application/json", "Authorization": f"apikey {API_KEY}"},
    )
    assert status == 202
    key = base64.b64encode(os.urandom(16)).decode()
    line, body = await exchange(shell_worker.port, upgrade_request(shell_worker.port, key=key))
    assert line.split(" ", 2)[1] == "503"
    assert json.loads(body) == {"error": "shutting down"}


# -- what the native listener hands to aiohttp ---------------------------------------------------------


def _odd_requests(port: int) -> list[bytes]:
    key = base64.b64encode(os.urandom(16)).decode()
    good = upgrade_request(port, key=key)
    return [
        good.replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        good.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 12"),
        good.replace(key.encode(), b"not-a-key"),
        good.replace(b"Upgrade: websocket\r\n", b""),
        good.replace(b"GET /connection/websocket", b"POST /connection/websocket"),
        good.replace(b"GET /connection/websocket", b"GET /connection/websocket/"),
        f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(),
        b"BREW /coffee HTCPCP/1.0\r\n\r\n",
    ]


async def test_what_the_native_listener_does_not_serve_is_answered_as_aiohttp_answers(
    start_worker: StartWorker,
) -> None:
    native = start_worker({"RESONANCE_WEBSOCKET_SERVER": "native"}, name="native", timeout=60)
    reference = start_worker({"RESONANCE_WEBSOCKET_SERVER": "aiohttp"}, name="aiohttp", timeout=60)
    for native_request, reference_request in zip(
        _odd_requests(native.port), _odd_requests(reference.port), strict=True
    ):
        got = await exchange(native.port, native_request)
        expected = await exchange(reference.port, reference_request)
        assert got == expected, native_request
