"""Readmission tickets: one per client sent away to reconnect, per address, for a window."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resonance_worker.domain.readmission import Readmissions


def test_a_ticket_admits_one_handshake_of_its_address_within_the_window() -> None:
    tickets = Readmissions(window_s=10.0)
    tickets.grant("10.0.0.1", now=100.0)
    assert not tickets.take("10.0.0.2", now=101.0)  # another address has none
    assert tickets.take("10.0.0.1", now=101.0)
    assert not tickets.take("10.0.0.1", now=101.5)  # one handshake per client sent away
    tickets.grant("10.0.0.1", now=200.0)
    assert not tickets.take("10.0.0.1", now=210.0)  # expired with its window
    assert tickets.held(210.0) == 0


def test_a_shared_address_gets_as_many_handshakes_as_clients_were_sent_away() -> None:
    tickets = Readmissions(window_s=10.0)
    for at in (0.0, 1.0, 2.0):
        tickets.grant("nat", now=at)
    assert tickets.held(3.0) == 3
    assert tickets.take("nat", now=3.0) and tickets.take("nat", now=3.0)
    # The oldest were used: the last one still expires at its own time (12), not the first's (10).
    assert tickets.held(10.5) == 1 and tickets.take("nat", now=11.0)
    assert not tickets.take("nat", now=11.0)
    tickets.grant("", now=11.0)  # no address: nothing to hold it by
    assert tickets.held(11.0) == 0


def test_tickets_are_bounded_oldest_first() -> None:
    tickets = Readmissions(window_s=60.0, max_tickets=2)
    tickets.grant("a", now=0.0)
    tickets.grant("b", now=1.0)
    tickets.grant("c", now=2.0)
    assert tickets.held(3.0) == 2
    assert not tickets.take("a", now=3.0) and tickets.take("b", now=3.0) and tickets.take("c", now=3.0)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="window_s"):
        Readmissions(window_s=0)
    with pytest.raises(ValueError, match="max_tickets"):
        Readmissions(max_tickets=0)


def test_a_workers_tickets_are_shared_newest_first_and_bounded() -> None:
    tickets = Readmissions(window_s=10.0)
    for at, address in ((0.0, "a"), (1.0, "b"), (2.0, "a"), (3.0, "c")):
        tickets.grant(address, now=at)
    assert tickets.take("a", now=4.0)  # a's oldest (expiring at 10) is used: not shared
    assert tickets.shared(4.0) == [("b", 11.0), ("a", 12.0), ("c", 13.0)]
    assert tickets.shared(4.0, limit=2) == [("a", 12.0), ("c", 13.0)]
    assert tickets.shared(11.5) == [("a", 12.0), ("c", 13.0)]
    assert Readmissions().shared(0.0) == []


def test_a_peers_ticket_admits_one_handshake_here_and_expires() -> None:
    here = Readmissions(window_s=10.0)
    here.set_peers({"w2": [("10.0.0.1", 50.0), ("10.0.0.1", 51.0)], "w3": [("10.0.0.2", 5.0)]}, now=40.0)
    assert here.peer_tickets(40.0) == 2  # w3's expired
    assert not here.take("10.0.0.2", now=40.0)
    assert here.take("10.0.0.1", now=41.0) and here.take("10.0.0.1", now=41.0)
    assert not here.take("10.0.0.1", now=41.0)  # two clients sent away: two handshakes
    # The peer shares the same tickets again at its next step: used here, they stay used.
    here.set_peers({"w2": [("10.0.0.1", 50.0), ("10.0.0.1", 51.0)]}, now=42.0)
    assert not here.take("10.0.0.1", now=42.0) and here.peer_tickets(42.0) == 0
    here.set_peers({"w2": [("10.0.0.1", 60.0)]}, now=45.0)  # a new one
    assert not here.take("10.0.0.1", now=60.0)  # expired with its window


def test_own_tickets_are_used_before_a_peers() -> None:
    here = Readmissions(window_s=10.0)
    here.grant("nat", now=0.0)
    here.set_peers({"w2": [("nat", 9.0)]}, now=0.0)
    assert here.take("nat", now=1.0) and here.held(1.0) == 0 and here.peer_tickets(1.0) == 1
    assert here.take("nat", now=1.0) and not here.take("nat", now=1.0)


@settings(max_examples=400)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["grant", "take_a", "take_b", "share"]), st.sampled_from(["x", "x", "y"])),
        max_size=60,
    )
)
def test_shared_tickets_admit_at_most_one_handshake_per_worker_each(steps: list[tuple[str, str]]) -> None:
    """Worker a sends clients away, a and b both admit; b learns a's tickets whenever a shares them."""
    a, b = Readmissions(window_s=1_000.0), Readmissions(window_s=1_000.0)
    granted = {"x": 0, "y": 0}
    admitted = {("a", "x"): 0, ("a", "y"): 0, ("b", "x"): 0, ("b", "y"): 0}
    for now, (step, address) in enumerate(steps):
        if step == "grant":
            a.grant(address, float(now))
            granted[address] += 1
        elif step == "share":
            b.set_peers({"a": a.shared(float(now))}, float(now))
        else:
            worker, tickets = ("a", a) if step == "take_a" else ("b", b)
            admitted[worker, address] += tickets.take(address, float(now))
    for address, count in granted.items():
        assert admitted["a", address] <= count and admitted["b", address] <= count
