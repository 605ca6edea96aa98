"""Readmission tickets: one per client sent away to reconnect, per address, for a window."""

from __future__ import annotations

import pytest
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
