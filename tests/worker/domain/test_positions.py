"""PositionWatch: a subscription is lost only when it stays behind a top seen one check earlier."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from resonance_worker.domain.codes import Disconnects
from resonance_worker.domain.operations import Connected, StreamState, UnsubscribeOp
from resonance_worker.domain.positions import PositionWatch, reached
from resonance_worker.domain.protocol import encode_publication_push
from resonance_worker.domain.session import SessionConfig

from tests.worker.domain.test_session import T0, connected, make, pub, replies, send, subscribe, token


def test_reached_needs_the_same_epoch_and_an_offset_at_or_past_the_top() -> None:
    assert reached((5, "e"), (5, "e"))
    assert reached((6, "e"), (5, "e"))  # a publication arrived after the top was read
    assert not reached((4, "e"), (5, "e"))
    assert not reached((9, "old"), (1, "new"))


def test_a_publication_in_flight_at_one_check_is_not_a_loss() -> None:
    watch = PositionWatch()
    assert not watch.check("sub", (4, "e"), (5, "e"))  # 5 stored, not yet fanned out
    assert len(watch) == 1
    # It arrived; meanwhile 6 was stored and is in flight in turn.
    assert not watch.check("sub", (5, "e"), (6, "e"))
    assert not watch.check("sub", (6, "e"), (6, "e"))
    assert len(watch) == 0


def test_behind_the_previous_checks_top_is_lost_once() -> None:
    watch = PositionWatch()
    assert not watch.check("sub", (4, "e"), (5, "e"))
    assert watch.check("sub", (4, "e"), (5, "e"))  # 5 never came
    assert len(watch) == 0  # forgotten: the resubscription starts afresh
    assert not watch.check("sub", (4, "e"), (5, "e"))


def test_a_new_epoch_not_reached_by_the_next_check_is_lost() -> None:
    watch = PositionWatch()
    assert not watch.check("sub", (40, "old"), (0, "new"))
    assert watch.check("sub", (40, "old"), (1, "new"))


def test_subscriptions_are_judged_apart_and_the_gone_are_forgotten() -> None:
    watch = PositionWatch()
    assert not watch.check(("a", "ch"), (1, "e"), (3, "e"))
    assert not watch.check(("b", "ch"), (2, "e"), (3, "e"))
    watch.keep_only([("b", "ch")])
    assert len(watch) == 1
    assert not watch.check(("a", "ch"), (1, "e"), (3, "e"))  # a fresh suspicion, not a second strike
    assert watch.check(("b", "ch"), (2, "e"), (3, "e"))


@given(
    start=st.integers(0, 1000),
    steps=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=30),
)
def test_a_subscription_that_keeps_up_within_one_check_is_never_lost(
    start: int, steps: list[tuple[int, int]]
) -> None:
    """Each round new publications are stored (the top moves) and the subscriber receives at
    least everything stored before the previous check: never declared lost."""
    watch = PositionWatch()
    top = position = start
    for published, extra in steps:
        previous_top = top
        top += published
        position = max(position, min(top, previous_top + extra))
        assert not watch.check("sub", (position, "e"), (top, "e"))


# -- what the session exposes to the check --------------------------------------------------------


def test_a_session_tells_the_position_of_its_positioned_subscriptions_only() -> None:
    session = connected()
    subscribe(session, "chat:room", StreamState(3, "ep"))
    subscribe(session, "typing:room", StreamState(0, ""), cmd_id=3)
    assert session.stream_position("chat:room") == (3, "ep")
    session.deliver_publication("chat:room", encode_publication_push("chat:room", pub(4)), 4, "ep")
    assert session.stream_position("chat:room") == (4, "ep")
    assert session.stream_position("typing:room") is None  # not positioned
    assert session.stream_position("chat:other") is None  # not subscribed
    send(session, {"id": 4, "subscribe": {"channel": "chat:later"}})
    assert session.stream_position("chat:later") is None  # still subscribing
    session.position_lost("chat:later")  # nothing to lose yet
    assert "chat:later" in session.channels


def test_a_lost_position_is_insufficient_state_and_the_client_resubscribes() -> None:
    session = connected()
    subscribe(session, "chat:room", StreamState(3, "ep"))
    session.position_lost("chat:room")
    (push,) = replies(session)
    assert push == {
        "push": {"channel": "chat:room", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}
    }
    (op,) = session.effects()
    assert isinstance(op, UnsubscribeOp) and op.channel == "chat:room"
    assert session.stream_position("chat:room") is None
    session.position_lost("chat:room")  # gone already: nothing more
    assert replies(session) == []


def test_a_server_side_subscription_that_lost_its_position_closes_the_connection() -> None:
    session = make(SessionConfig(personal_channel=False))
    send(session, {"id": 1, "connect": {"token": token(channels=["chat:lobby"])}})
    (op,) = session.effects()
    session.complete(op, Connected({"chat:lobby": StreamState(2, "e")}), T0)
    replies(session)
    assert session.stream_position("chat:lobby") == (2, "e")
    session.position_lost("chat:lobby")
    assert session.close_reason == Disconnects.INSUFFICIENT_STATE
    assert session.stream_position("chat:lobby") is None
