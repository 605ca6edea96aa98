"""A local Sentry ingest endpoint: the DSN target for tests. It accepts what a Sentry SDK sends
(``POST /api/<project>/envelope/``, gzip or not) and keeps every request's raw body, so a test can
check both what arrived and that a secret never did.

    with SentrySink() as sink:
        sentry_sdk.init(dsn=sink.dsn)
        ...
        events = sink.wait_for_events(1)
        assert b"secret" not in sink.raw()
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.harness.processes import free_port


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


def envelope_items(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """(item header, payload) pairs of one envelope (newline-delimited; a ``length`` header wins)."""
    lines = body.split(b"\n", 1)
    rest = lines[1] if len(lines) > 1 else b""
    items = []
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, payload))
    return items


class SentrySink:
    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = _decode(self.rfile.read(length), self.headers.get("Content-Encoding", ""))
                with sink._lock:
                    sink.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://public-key@127.0.0.1:{self.port}/1"

    def __enter__(self) -> SentrySink:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()

    def raw(self) -> bytes:
        """Everything received so far, concatenated (decompressed)."""
        with self._lock:
            return b"\n".join(self.bodies)

    def events(self) -> list[dict[str, Any]]:
        """Every error event (envelope items of type ``event``) received so far."""
        with self._lock:
            bodies = list(self.bodies)
        return [
            json.loads(payload)
            for body in bodies
            for header, payload in envelope_items(body)
            if header.get("type") == "event"
        ]

    def wait_for_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(events := self.events()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(events)} events arrived, not {count}")
            time.sleep(0.05)
        return events
