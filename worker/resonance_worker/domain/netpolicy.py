"""Who may connect, and from which address a connection counts: IP allow and
deny lists, and a forwarded-for header trusted only from configured proxies.

The header is read right to left: each proxy appends the address it saw, so
the entries a client wrote itself are on the left and cannot be trusted. The
client's address is the rightmost entry that is not one of our proxies - the
first hop we did not run. A peer that is not a trusted proxy is the client,
whatever header it sends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or bare addresses) as networks; ``ValueError`` names the bad entry."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {cidr!r}") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Allow/deny lists (deny wins; an empty allow list allows all) and trusted proxies."""

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()
    header: str | None = None

    @classmethod
    def from_lists(
        cls,
        *,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        trusted_proxies: Iterable[str] = (),
        header: str | None = None,
    ) -> AddressPolicy:
        return cls(parse_networks(allow), parse_networks(deny), parse_networks(trusted_proxies), header)

    def client_address(self, peer: str, forwarded: str | None) -> str:
        """The address a connection counts as: ``peer`` unless it is a trusted
        proxy that passed a forwarded-for value."""
        if not self.header or not forwarded:
            return peer  # the common case costs no address parsing (it is on every connect)
        peer_address = _address(peer)
        if peer_address is None or not _within(peer_address, self.trusted_proxies):
            return peer
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                return peer  # a garbled chain: count the proxy, not a string a client chose
            if not _within(address, self.trusted_proxies):
                return str(address)
        # Every hop is one of ours: the leftmost is the origin.
        first = _address(hops[0]) if hops else None
        return str(first) if first is not None else peer

    def admits(self, address: str) -> bool:
        """Whether a connection from ``address`` may proceed."""
        if not self.allow and not self.deny:
            return True
        parsed = _address(address)
        if parsed is None:
            return not self.allow  # unknown origin: refused when an allow list exists
        if _within(parsed, self.deny):
            return False
        return not self.allow or _within(parsed, self.allow)
