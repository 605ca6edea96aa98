"""Which browser origins may use the worker (sans-I/O): the WebSocket handshake and the CORS of the
HTTP endpoints a browser app reads.

Browsers send ``Origin``; native apps (the mobile SDKs, servers) do not, and are always allowed. An
origin is allowed when it is the worker's own (its host and port are the request's ``Host``: the
pages the worker serves itself, such as the console) or on the configured list. A list entry is an
origin (``https://app.example.com``, ``http://localhost:3000``), one with a subdomain wildcard
(``https://*.example.com``: any subdomain, not the domain itself), ``null`` (sandboxed pages,
``file:`` URLs) or ``*`` (any origin). Comparisons ignore case; a port that is the scheme's default
may be left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
_ORIGIN = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9.*_-]+)(?::(?P<port>\d{1,5}))?$"
)


def _parse(origin: str) -> tuple[str, str, str] | None:
    """``(scheme, host, port)`` of an origin, the port filled in from the scheme; None if malformed."""
    match = _ORIGIN.match(origin.strip().lower())
    if match is None:
        return None
    scheme, host = match["scheme"], match["host"]
    return scheme, host, match["port"] or _DEFAULT_PORTS.get(scheme, "")


def _host_port(host_header: str, scheme: str) -> tuple[str, str]:
    """``(host, port)`` of a ``Host`` header (``example.com``, ``[::1]:8000``), the port from the scheme."""
    value = host_header.strip().lower()
    if value.startswith("["):
        end = value.find("]") + 1
        host, port = value[:end], value[end + 1 :]
    else:
        host, _, port = value.partition(":")
    return host, port or _DEFAULT_PORTS.get(scheme, "")


def check_entry(entry: str) -> str:
    """An entry of the list, checked (``ValueError`` naming what is wrong with it)."""
    if entry in ("*", "null"):
        return entry
    parsed = _parse(entry)
    if parsed is None or "*" in parsed[1].removeprefix("*."):
        shapes = "scheme://host[:port] (no path), https://*.example.com, null or *"
        raise ValueError(f"{entry!r} is not an origin: use {shapes}")
    return entry


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """The configured origins (``allowed_origins``) besides the worker's own."""

    allowed: tuple[str, ...] = ()

    @classmethod
    def from_list(cls, entries: Sequence[str]) -> OriginPolicy:
        return cls(tuple(check_entry(e) for e in entries))

    def admits(self, origin: str | None, host: str) -> bool:
        """Whether a request with this ``Origin`` header (None: none sent) to this ``Host`` is allowed."""
        if origin is None:
            return True  # not a browser: native apps and servers send no Origin
        if "*" in self.allowed:
            return True
        if origin.strip().lower() == "null":
            return "null" in self.allowed
        parsed = _parse(origin)
        if parsed is None:
            return False
        scheme, origin_host, port = parsed
        if (origin_host, port) == _host_port(host, scheme):
            return True  # the worker's own origin
        return any(_matches(entry, parsed) for entry in self.allowed)


def _matches(entry: str, origin: tuple[str, str, str]) -> bool:
    allowed = _parse(entry)
    if allowed is None:
        return False
    scheme, host, port = allowed
    if (scheme, port) != (origin[0], origin[2]):
        return False
    if host.startswith("*."):
        return origin[1].endswith(host[1:])
    return host == origin[1]
