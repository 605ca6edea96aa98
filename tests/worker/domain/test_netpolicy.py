"""IP allow/deny lists and the forwarded-for chain, believed only from our proxies."""

from __future__ import annotations

import pytest
from resonance_worker.domain.netpolicy import AddressPolicy, parse_networks

PROXIES = AddressPolicy.from_lists(trusted_proxies=["10.0.0.0/8", "::1/128"], header="X-Forwarded-For")


def test_a_peer_outside_the_trusted_proxies_is_the_client_whatever_it_forwards() -> None:
    assert PROXIES.client_address("203.0.113.7", "1.2.3.4") == "203.0.113.7"


def test_the_rightmost_hop_we_did_not_run_is_the_client() -> None:
    # The client wrote "6.6.6.6" itself; our ingress appended the address it saw.
    assert PROXIES.client_address("10.1.1.1", "6.6.6.6, 198.51.100.2") == "198.51.100.2"
    assert PROXIES.client_address("10.1.1.1", "198.51.100.2, 10.2.2.2") == "198.51.100.2"
    assert PROXIES.client_address("::1", "2001:db8::5") == "2001:db8::5"


def test_a_chain_of_only_our_proxies_counts_its_origin() -> None:
    assert PROXIES.client_address("10.1.1.1", "10.3.3.3, 10.2.2.2") == "10.3.3.3"


def test_garbled_or_missing_headers_count_the_peer() -> None:
    assert PROXIES.client_address("10.1.1.1", "not-an-ip") == "10.1.1.1"
    assert PROXIES.client_address("10.1.1.1", None) == "10.1.1.1"
    assert PROXIES.client_address("10.1.1.1", " , ") == "10.1.1.1"
    assert PROXIES.client_address("garbage", "1.2.3.4") == "garbage"
    no_header = AddressPolicy.from_lists(trusted_proxies=["10.0.0.0/8"])
    assert no_header.client_address("10.1.1.1", "1.2.3.4") == "10.1.1.1"


def test_ports_and_brackets_are_stripped() -> None:
    assert PROXIES.client_address("10.1.1.1", "198.51.100.2:5555") == "198.51.100.2"
    assert PROXIES.client_address("10.1.1.1", "[2001:db8::9]:443") == "2001:db8::9"


def test_deny_wins_over_allow_and_an_empty_allow_list_allows_everyone() -> None:
    policy = AddressPolicy.from_lists(allow=["192.0.2.0/24"], deny=["192.0.2.66/32"])
    assert policy.admits("192.0.2.1")
    assert not policy.admits("192.0.2.66")
    assert not policy.admits("198.51.100.1")
    assert not policy.admits("::1")  # other family, not in the allow list
    assert not policy.admits("unknown")
    deny_only = AddressPolicy.from_lists(deny=["198.51.100.0/24"])
    assert deny_only.admits("192.0.2.1") and not deny_only.admits("198.51.100.9")
    assert deny_only.admits("unknown")
    assert AddressPolicy().admits("anything")


def test_bad_cidrs_are_named() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        parse_networks(["10.0.0.0/33"])
    assert parse_networks(["10.0.0.1/8"])[0].prefixlen == 8  # host bits are tolerated
