"""The PROXY protocol parser (sans I/O): the specification's examples, every way a header can be
malformed, byte-at-a-time feeding, and a fuzz that no input raises anything but ProxyProtocolError."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from resonance_worker.domain.proxyproto import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse,
    starts_header,
)


def v2(command: int = 1, family: int = 0x11, block: bytes = b"", version: int = 2) -> bytes:
    return V2_SIGNATURE + bytes([version << 4 | command, family]) + struct.pack("!H", len(block)) + block


def inet(source: str, destination: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.ip_address(source).packed
        + ipaddress.ip_address(destination).packed
        + struct.pack("!HH", sport, dport)
    )


def test_v1_tcp4_and_tcp6_name_the_client_and_leave_the_request() -> None:
    data = b"PROXY TCP4 192.0.2.7 10.0.0.5 56324 8000\r\nGET / HTTP/1.1\r\n"
    header = parse(data)
    assert header == ProxyHeader(42, ("192.0.2.7", 56324))
    assert data[header.consumed :] == b"GET / HTTP/1.1\r\n"
    assert parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n") == ProxyHeader(44, ("2001:db8::1", 1))


def test_v1_unknown_means_the_real_endpoints() -> None:
    assert parse(b"PROXY UNKNOWN\r\n") == ProxyHeader(15, None)
    assert parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nx") == ProxyHeader(35, None)


def test_the_longest_v1_line_is_accepted() -> None:
    full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    assert len(line) == 104
    assert parse(line) == ProxyHeader(104, (full, 65535))


def test_v2_inet_inet6_with_tlvs() -> None:
    data = v2(block=inet("198.51.100.9", "10.1.2.3", 40000, 8000) + b"\x04\x00\x01x") + b"GET"
    assert parse(data) == ProxyHeader(16 + 16, ("198.51.100.9", 40000))
    data6 = v2(family=0x21, block=inet("2001:db8::9", "2001:db8::1", 7, 8000))
    assert parse(data6) == ProxyHeader(16 + 36, ("2001:db8::9", 7))


@pytest.mark.parametrize(
    "data",
    [
        v2(command=0, block=inet("198.51.100.9", "10.1.2.3", 1, 2)),  # LOCAL: a health check
        v2(family=0x00),  # UNSPEC
        v2(family=0x31, block=bytes(216)),  # UNIX
        v2(family=0x12, block=inet("198.51.100.9", "10.1.2.3", 1, 2)),  # datagram
    ],
)
def test_v2_headers_without_a_tcp_client_mean_the_real_endpoints(data: bytes) -> None:
    header = parse(data)
    assert header is not None and header.source is None and header.consumed == len(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n", "does not start with a PROXY"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "not ended by CRLF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "not ended by CRLF"),
        (b"PROXY " + b"A" * 120, "without CRLF in 107"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "bad PROXY v1 line"),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "bad PROXY v1 line"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad PROXY v1 line"),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "bad address"),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad address"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "in a TCP4"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xff\r\n", "bad port"),
        (b"PROXY TCP4 \xff.2.3.4 5.6.7.8 1 2\r\n", "bad address"),
        (v2(version=1), "version 1"),
        (v2(command=2), "command 2"),
        (v2(family=0x41), "family/transport"),
        (v2(family=0x13), "family/transport"),
        (v2(block=b"\x01\x02\x03\x04"), "address block of 4 bytes"),
        (v2(family=0x21, block=inet("1.2.3.4", "5.6.7.8", 1, 2)), "address block of 12 bytes"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse(data)


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY TCP4 192.0.2.7 10.0.0.5 56324 8000\r\nGET",
        v2(block=inet("198.51.100.9", "10.1.2.3", 40000, 8000) + b"\x04\x00\x01x") + b"GET",
    ],
)
def test_fed_byte_by_byte_it_waits_then_answers_once_complete(data: bytes) -> None:
    answers = [parse(data[:n]) for n in range(len(data) + 1)]
    complete = next(n for n, answer in enumerate(answers) if answer is not None)
    assert all(answer is None for answer in answers[:complete])
    assert all(answer == answers[complete] for answer in answers[complete:])
    assert all(starts_header(data[:n]) for n in range(complete + 1))


def test_starts_header_tells_plain_http_from_a_header_in_its_first_bytes() -> None:
    assert not starts_header(b"G")
    assert not starts_header(b"PO")  # POST
    assert not starts_header(b"PUT ")
    assert starts_header(b"") and starts_header(b"P") and starts_header(b"PROX") and starts_header(b"\r\n\r")


@given(st.binary(max_size=300))
def test_any_bytes_give_none_a_header_or_a_protocol_error(data: bytes) -> None:
    try:
        header = parse(data)
    except ProxyProtocolError:
        return
    if header is not None:
        assert 0 < header.consumed <= len(data)
        if header.source is not None:
            ipaddress.ip_address(header.source[0])
            assert 0 <= header.source[1] <= 65535


@given(
    st.sampled_from([b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN", V2_SIGNATURE + b"\x21\x11"]),
    st.binary(max_size=200),
)
def test_mutated_header_tails_never_raise_anything_else(prefix: bytes, tail: bytes) -> None:
    with contextlib.suppress(ProxyProtocolError):
        header = parse(prefix + tail)
        assert header is None or 0 < header.consumed <= len(prefix + tail)
