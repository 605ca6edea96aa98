"""The listener that reads a PROXY protocol header before aiohttp sees the connection
(``settings.proxy_protocol``; the parser is ``domain/proxyproto.py``).

:class:`ProxyProtocolSite` listens like aiohttp's ``TCPSite`` but gives each connection first to a
:class:`HeaderReader`:

* a peer outside ``trusted_proxies`` is never read for a header: it is handed to aiohttp at once
  (its bytes are HTTP; a PROXY line from it is a bad request, not an address);
* a trusted peer's connection is held until its header is complete; then aiohttp's protocol gets the
  connection with the header's source as its ``peername`` (so ``request.remote``, the per-address
  limits, pain budgets and IP lists count the client, through the same ``client_ip`` path as a
  forwarded-for header) and the bytes after the header. A trusted peer that starts with no header at
  all (the kubelet's probes, an in-cluster caller) is served as it is;
* a bad header, or none complete within :data:`HEADER_SECONDS`, closes that connection with a log
  line. Nothing a peer sends can raise out of here into the server.

After the hand-over the reader steps aside (``transport.set_protocol``): no cost per message.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from resonance_worker.domain.netpolicy import Network, parse_networks
from resonance_worker.domain.proxyproto import ProxyProtocolError, parse, starts_header

log = logging.getLogger("resonance.worker.proxyproto")

HEADER_SECONDS = 10.0
"""How long a trusted peer may take to send its whole header."""


class ProxiedTransport:
    """The connection's transport, answering ``peername`` with the client the header named."""

    def __init__(self, transport: asyncio.Transport, peername: tuple[str, int]) -> None:
        self._transport = transport
        self._peername = peername

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peername
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _trusted(peername: Any, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(peername[0])
    except (TypeError, IndexError, ValueError):
        return False
    return any(address.version == net.version and address in net for net in networks)


def hand_over(
    transport: asyncio.Transport | ProxiedTransport, protocol: asyncio.Protocol, received: bytes
) -> None:
    """Give the connection to ``protocol`` as if it had been its own from the start (``received``:
    the bytes read so far that are its)."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    if received:
        protocol.data_received(received)


class HeaderReader(asyncio.Protocol):
    """One connection until its PROXY header is read; then aiohttp's protocol has it."""

    def __init__(
        self,
        make_protocol: Callable[[], asyncio.Protocol],
        trusted: tuple[Network, ...],
        pending: set[HeaderReader],
    ) -> None:
        self._make_protocol = make_protocol
        self._trusted = trusted
        self._pending = pending
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's or uvloop's (whose transports are not asyncio.Transport subclasses).
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if not _trusted(transport.get_extra_info("peername"), self._trusted):
            self._hand_over(transport, b"")
            return
        self._pending.add(self)
        self._deadline = asyncio.get_running_loop().call_later(HEADER_SECONDS, self._too_slow)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._buffer += data
        if not starts_header(self._buffer):  # a trusted peer without a header: served as it is
            self._hand_over(transport, self._buffer)
            return
        try:
            header = parse(self._buffer)
        except ProxyProtocolError as exc:
            self._refuse(f"bad PROXY protocol header: {exc}")
            return
        if header is None:
            return
        rest = self._buffer[header.consumed :]
        proxied = transport if header.source is None else ProxiedTransport(transport, header.source)
        self._hand_over(proxied, rest)

    def eof_received(self) -> bool | None:
        self._refuse("closed before its PROXY protocol header was complete")
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._settle()

    def close(self) -> None:
        """Shut down: a connection still without its header is closed."""
        if self._transport is not None:
            self._transport.close()
        self._settle()

    def _hand_over(self, transport: asyncio.Transport | ProxiedTransport, rest: bytes) -> None:
        self._settle()
        hand_over(transport, self._make_protocol(), rest)

    def _too_slow(self) -> None:
        self._deadline = None
        self._refuse(f"no complete PROXY protocol header within {HEADER_SECONDS:g} s")

    def _refuse(self, reason: str) -> None:
        transport = self._transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        log.warning(
            "closed a connection: %s", reason, extra={"peer": peer[0] if peer else "", "reason": reason}
        )
        if transport is not None:
            transport.close()
        self._settle()

    def _settle(self) -> None:
        self._pending.discard(self)
        self._buffer = b""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class ProxyProtocolSite(web.BaseSite):
    """``web.TCPSite`` with a :class:`HeaderReader` in front of each connection."""

    __slots__ = ("_host", "_make_protocol", "_pending", "_port", "_reuse_port", "_trusted")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        trusted_proxies: list[str],
        backlog: int = 128,
        reuse_port: bool = False,
        make_protocol: Callable[[web.Server], Callable[[], asyncio.Protocol]] | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._make_protocol = make_protocol
        self._host = host
        self._port = port
        self._trusted = parse_networks(trusted_proxies)
        self._pending: set[HeaderReader] = set()
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self._port} (PROXY protocol)"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        # After the header: aiohttp's protocol, or what ``make_protocol`` makes (the native WebSocket
        # listener, which hands everything but an upgrade to aiohttp in turn).
        after = server if self._make_protocol is None else self._make_protocol(server)
        self._server = await loop.create_server(
            lambda: HeaderReader(after, self._trusted, self._pending),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )

    async def stop(self) -> None:
        for reader in list(self._pending):
            reader.close()
        await super().stop()
