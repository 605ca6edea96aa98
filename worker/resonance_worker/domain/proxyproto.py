"""The PROXY protocol header (HAProxy's ``doc/proxy-protocol.txt``, versions 1 and 2), as a receiver
reads it. Sans I/O: bytes in, a verdict out.

A TCP load balancer in front of the workers (nginx's ``stream`` with ``proxy_protocol on``, HAProxy
``send-proxy``, an AWS NLB) writes one header at the start of each connection naming the client's
address; the HTTP request follows. :func:`parse` is given the bytes received so far and answers:

* ``None`` - not complete yet: read more (a v1 line is at most 107 bytes with its CRLF; a v2 header
  is 16 bytes plus the length it announces);
* :class:`ProxyHeader` - the first ``consumed`` bytes were the header; ``source`` is the client's
  ``(address, port)``, or ``None`` when the header says to use the connection's own endpoints
  (v1 ``UNKNOWN``, a v2 ``LOCAL`` command such as a health check, an ``UNSPEC`` or UNIX family);
* :class:`ProxyProtocolError` raised - not a valid header; the connection must be closed.

:func:`starts_header` tells whether a connection's first bytes are (or may still become) a PROXY
header, for a listener that also serves callers that send none (``transport/proxyproto.py``).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107
"""The longest v1 line, CRLF included (``PROXY TCP6`` with two full IPv6 addresses and ports)."""
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16
"""Signature (12), version and command (1), family and transport (1), length (2)."""
V2_ADDRESS_SIZE = {0x1: 4, 0x2: 16}
"""Bytes of one address per v2 family (INET, INET6); UNIX (0x3) carries no client IP."""


class ProxyProtocolError(ValueError):
    """Bytes that are not a valid PROXY protocol header: the connection must be closed."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    consumed: int
    """Length of the header: what follows it belongs to the proxied protocol."""
    source: tuple[str, int] | None
    """The client's address and port; ``None``: use the connection's own peer."""


def starts_header(data: bytes) -> bool:
    """Whether ``data`` begins a PROXY header (v1 or v2), or is a prefix of one's signature."""
    return any(data[: len(sig)] == sig[: len(data)] for sig in (V1_PREFIX, V2_SIGNATURE))


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data`` (see the module docstring for the three outcomes)."""
    if data[: len(V2_SIGNATURE)] == V2_SIGNATURE[: len(data)]:
        return _v2(data) if len(data) >= V2_FIXED else None
    if data[: len(V1_PREFIX)] == V1_PREFIX[: len(data)]:
        return _v1(data) if len(data) > len(V1_PREFIX) else None
    raise ProxyProtocolError("the connection does not start with a PROXY protocol header")


def _v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyProtocolError(f"PROXY v1 line without CRLF in {V1_MAX} bytes")
        if b"\n" in data or b"\r" in data[:-1]:
            raise ProxyProtocolError("PROXY v1 line not ended by CRLF")
        return None
    line = data[:end]
    fields = line.split(b" ")
    if fields[1] == b"UNKNOWN":  # the proxy could not tell: the rest of the line is ignored
        return ProxyHeader(end + 2, None)
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError(f"bad PROXY v1 line {line[:V1_MAX]!r}")
    version = 4 if fields[1] == b"TCP4" else 6
    source = _v1_address(fields[2], version)
    _v1_address(fields[3], version)
    port = _v1_port(fields[4])
    _v1_port(fields[5])
    return ProxyHeader(end + 2, (source, port))


def _v1_address(text: bytes, version: int) -> str:
    try:
        if b"%" in text:  # a scoped IPv6 address names an interface of the proxy, not a client
            raise ValueError
        address = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError(f"bad address {text[:48]!r} in a PROXY v1 line") from None
    if address.version != version:
        raise ProxyProtocolError(f"address {address} in a TCP{version} PROXY v1 line")
    return str(address)


def _v1_port(text: bytes) -> int:
    # Decimal, no sign, no leading zero (the specification's grammar), at most 65535.
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[:1] == b"0") or int(text) > 65535:
        raise ProxyProtocolError(f"bad port {text[:8]!r} in a PROXY v1 line")
    return int(text)


def _v2(data: bytes) -> ProxyHeader | None:
    version_command, family_transport = data[12], data[13]
    (length,) = struct.unpack("!H", data[14:16])
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 header with version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (0x0, 0x1):  # LOCAL, PROXY
        raise ProxyProtocolError(f"PROXY v2 header with command {command}")
    family, transport = family_transport >> 4, family_transport & 0x0F
    if family > 0x3 or transport > 0x2:
        raise ProxyProtocolError(f"PROXY v2 header with family/transport {family_transport:#04x}")
    if len(data) < V2_FIXED + length:
        return None
    consumed = V2_FIXED + length
    size = V2_ADDRESS_SIZE.get(family)
    if command == 0x0 or size is None or transport != 0x1:
        # LOCAL (the proxy's own health check), UNSPEC, UNIX, datagrams: the real endpoints count.
        return ProxyHeader(consumed, None)
    if length < 2 * size + 4:
        raise ProxyProtocolError(f"PROXY v2 address block of {length} bytes, {2 * size + 4} needed")
    block = data[V2_FIXED : V2_FIXED + 2 * size + 4]
    source = str(ipaddress.ip_address(block[:size]))
    (port,) = struct.unpack("!H", block[2 * size : 2 * size + 2])
    return ProxyHeader(consumed, (source, port))
