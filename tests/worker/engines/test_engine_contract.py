"""The contract every engine keeps, run on the memory engine and on the Redis
engine against a real redis-server (``setup`` is parametrized over both)."""

from __future__ import annotations

import pytest
from resonance_worker.domain import keys
from resonance_worker.domain.keys import SlotScope
from resonance_worker.engines.base import ClientInfo, HistoryOptions, StreamPosition
from resonance_worker.engines.redis import RedisEngine

from tests.worker.engines.conftest import EngineSetup, Node

KEEP = HistoryOptions(size=100, ttl_seconds=60)
ALICE = ClientInfo(user="alice", client="c-alice-1", conn_info=b'{"name":"Alice"}', chan_info=b'{"role":1}')
ALICE_2 = ClientInfo(user="alice", client="c-alice-2")
BOB = ClientInfo(user="bob", client="c-bob-1")


async def barrier(setup: EngineSetup, channel: str = "barrier") -> None:
    """Publish to a subscribed channel and wait for it: everything published
    before has been delivered (pub/sub keeps order on one connection)."""
    await setup.engine.subscribe(channel)
    before = len(setup.events.of("publication", channel))
    await setup.engine.publish(channel, b'"barrier"')
    await setup.events.wait_for(lambda: len(setup.events.of("publication", channel)) > before)


# -- publish and history ------------------------------------------------------------


async def test_publications_get_gap_free_offsets_in_one_epoch(setup: EngineSetup) -> None:
    engine = setup.engine
    results = [await engine.publish("chat:a", f'{{"n":{n}}}'.encode(), history=KEEP) for n in range(5)]

    assert [r.position.offset for r in results] == [1, 2, 3, 4, 5]
    assert len({r.position.epoch for r in results}) == 1
    assert results[0].position.epoch != ""
    assert not any(r.duplicate for r in results)

    publications, top = await engine.history("chat:a", limit=-1)
    assert top == results[-1].position
    assert [p.offset for p in publications] == [1, 2, 3, 4, 5]
    assert [p.data for p in publications] == [f'{{"n":{n}}}'.encode() for n in range(5)]


async def test_history_keeps_publisher_info_tags_and_time(setup: EngineSetup) -> None:
    await setup.engine.publish("chat:info", b'{"text":"hi"}', info=ALICE, tags={"kind": "text"}, history=KEEP)
    await setup.engine.publish("chat:info", b"[]", history=KEEP)

    (first, second), _ = await setup.engine.history("chat:info", limit=-1)
    assert first.info == ALICE
    assert first.tags == {"kind": "text"}
    assert first.time_ms > 1_600_000_000_000
    assert second.info is None
    assert second.tags == {}


async def test_history_limit_reverse_and_since(setup: EngineSetup) -> None:
    engine = setup.engine
    for n in range(1, 7):
        await engine.publish("chat:b", str(n).encode(), history=KEEP)

    only_top, top = await engine.history("chat:b")
    assert only_top == []
    assert top.offset == 6

    first_two, _ = await engine.history("chat:b", limit=2)
    assert [p.offset for p in first_two] == [1, 2]

    newest_two, _ = await engine.history("chat:b", limit=2, reverse=True)
    assert [p.offset for p in newest_two] == [6, 5]

    missed, _ = await engine.history("chat:b", since=StreamPosition(3, top.epoch), limit=-1)
    assert [p.offset for p in missed] == [4, 5, 6]

    missed_page, _ = await engine.history("chat:b", since=StreamPosition(3, top.epoch), limit=2)
    assert [p.offset for p in missed_page] == [4, 5]

    older, _ = await engine.history("chat:b", since=StreamPosition(3, top.epoch), limit=-1, reverse=True)
    assert [p.offset for p in older] == [2, 1]

    nothing_missed, _ = await engine.history("chat:b", since=top, limit=-1)
    assert nothing_missed == []

    nothing_older, _ = await engine.history(
        "chat:b", since=StreamPosition(1, top.epoch), limit=-1, reverse=True
    )
    assert nothing_older == []


async def test_since_from_another_epoch_recovers_nothing(setup: EngineSetup) -> None:
    result = await setup.engine.publish("chat:c", b"1", history=KEEP)

    publications, top = await setup.engine.history(
        "chat:c", since=StreamPosition(0, "not-" + result.position.epoch), limit=-1
    )

    assert publications == []
    assert top == result.position


async def test_reading_an_empty_channel_fixes_its_epoch(setup: EngineSetup) -> None:
    _, first = await setup.engine.history("chat:empty")
    _, again = await setup.engine.history("chat:empty", meta_ttl_seconds=60)
    published = await setup.engine.publish("chat:empty", b"1", history=KEEP)

    assert first.offset == 0
    assert first.epoch != ""
    assert again == first
    assert published.position == StreamPosition(1, first.epoch)


async def test_removing_history_starts_a_new_epoch(setup: EngineSetup) -> None:
    before = await setup.engine.publish("chat:d", b"1", history=KEEP)
    await setup.engine.remove_history("chat:d")

    publications, top = await setup.engine.history("chat:d", limit=-1)
    after = await setup.engine.publish("chat:d", b"2", history=KEEP)

    assert publications == []
    assert top.epoch != before.position.epoch
    assert after.position == StreamPosition(1, top.epoch)


async def test_channel_without_history_stores_nothing_and_has_no_offsets(setup: EngineSetup) -> None:
    await setup.engine.subscribe("typing:x")
    for options in (None, HistoryOptions(size=0, ttl_seconds=0)):
        result = await setup.engine.publish("typing:x", b'{"typing":true}', history=options)
        assert result.position == StreamPosition(0, "")

    await setup.events.wait_for(lambda: len(setup.events.of("publication", "typing:x")) == 2)
    publications, top = await setup.engine.history("typing:x", limit=-1)
    assert publications == []
    assert top.offset == 0
    assert all(e.position == StreamPosition(0, "") for e in setup.events.of("publication", "typing:x"))


async def test_history_is_trimmed_to_its_size(setup: EngineSetup) -> None:
    small = HistoryOptions(size=3, ttl_seconds=60)
    for n in range(1, 11):
        await setup.engine.publish("chat:e", str(n).encode(), history=small)

    publications, top = await setup.engine.history("chat:e", limit=-1)

    assert [p.offset for p in publications] == [8, 9, 10]
    assert top.offset == 10


async def test_history_expires_after_its_ttl_but_the_epoch_stays(setup: EngineSetup) -> None:
    short = HistoryOptions(size=10, ttl_seconds=0.3, meta_ttl_seconds=60)
    first = await setup.engine.publish("chat:f", b"1", history=short)
    await setup.engine.publish("chat:f", b"2", history=short)

    await setup.let_pass(0.6)
    expired, top = await setup.engine.history("chat:f", limit=-1)
    later = await setup.engine.publish("chat:f", b"3", history=short)
    kept, _ = await setup.engine.history("chat:f", limit=-1)

    assert expired == []
    assert top == StreamPosition(2, first.position.epoch)
    assert later.position == StreamPosition(3, first.position.epoch)
    assert [p.offset for p in kept] == [3]


async def test_every_publication_extends_the_history_ttl(setup: EngineSetup) -> None:
    short = HistoryOptions(size=10, ttl_seconds=1.5, meta_ttl_seconds=60)
    await setup.engine.publish("chat:g", b"1", history=short)
    await setup.let_pass(1.0)
    await setup.engine.publish("chat:g", b"2", history=short)
    await setup.let_pass(1.0)  # past the first publication's TTL, within the second's

    kept, _ = await setup.engine.history("chat:g", limit=-1)

    assert [p.offset for p in kept] == [1, 2]


async def test_a_stream_whose_meta_expired_gets_a_new_epoch(setup: EngineSetup) -> None:
    short = HistoryOptions(size=10, ttl_seconds=0.2, meta_ttl_seconds=0.3)
    first = await setup.engine.publish("chat:h", b"1", history=short)

    await setup.let_pass(0.6)
    publications, top = await setup.engine.history("chat:h", since=first.position, limit=-1)

    assert publications == []
    assert top.epoch != first.position.epoch
    assert top.offset == 0


# -- idempotency ------------------------------------------------------------------


async def test_a_repeated_idempotency_key_stores_and_sends_nothing(setup: EngineSetup) -> None:
    await setup.engine.subscribe("chat:i")
    first = await setup.engine.publish("chat:i", b"1", history=KEEP, idempotency_key="k1")
    again = await setup.engine.publish("chat:i", b"1", history=KEEP, idempotency_key="k1")
    other = await setup.engine.publish("chat:i", b"2", history=KEEP, idempotency_key="k2")
    elsewhere = await setup.engine.publish("chat:j", b"1", history=KEEP, idempotency_key="k1")

    assert not first.duplicate
    assert again.duplicate
    assert again.position == first.position
    assert not other.duplicate
    assert other.position.offset == 2
    assert not elsewhere.duplicate  # keys are per channel
    publications, _ = await setup.engine.history("chat:i", limit=-1)
    assert [p.data for p in publications] == [b"1", b"2"]
    await barrier(setup)
    assert [e.publication.data for e in setup.events.of("publication", "chat:i") if e.publication] == [
        b"1",
        b"2",
    ]


async def test_an_idempotency_key_is_forgotten_after_its_ttl(setup: EngineSetup) -> None:
    first = await setup.engine.publish(
        "chat:k", b"1", history=KEEP, idempotency_key="k", idempotency_ttl_seconds=0.3
    )
    await setup.let_pass(0.6)
    second = await setup.engine.publish(
        "chat:k", b"1", history=KEEP, idempotency_key="k", idempotency_ttl_seconds=0.3
    )

    assert not second.duplicate
    assert second.position.offset == first.position.offset + 1


async def test_idempotency_without_history(setup: EngineSetup) -> None:
    first = await setup.engine.publish("typing:y", b"1", idempotency_key="k")
    second = await setup.engine.publish("typing:y", b"1", idempotency_key="k")

    assert not first.duplicate
    assert second.duplicate
    assert second.position == StreamPosition(0, "")


# -- fan-out ------------------------------------------------------------------------


async def test_publications_reach_a_subscribed_node_with_their_position(setup: EngineSetup) -> None:
    await setup.engine.subscribe("chat:l")
    result = await setup.engine.publish("chat:l", b'{"x":1}', info=ALICE, tags={"t": "1"}, history=KEEP)

    await setup.events.wait_for(lambda: bool(setup.events.of("publication", "chat:l")))
    (event,) = setup.events.of("publication", "chat:l")
    assert event.position == result.position
    assert event.publication is not None
    assert event.publication.offset == result.position.offset
    assert event.publication.data == b'{"x":1}'
    assert event.publication.info == ALICE
    assert event.publication.tags == {"t": "1"}


async def test_nothing_arrives_for_channels_not_subscribed(setup: EngineSetup) -> None:
    await setup.engine.subscribe("chat:m")
    await setup.engine.unsubscribe("chat:m")
    await setup.engine.unsubscribe("chat:never")  # harmless
    await setup.engine.publish("chat:m", b"1", history=KEEP)
    await setup.engine.publish_join("chat:m", ALICE)
    await setup.engine.publish_leave("chat:m", ALICE)

    await barrier(setup)

    assert [e for e in setup.events.events if e.channel == "chat:m"] == []


async def test_join_leave_and_control_are_delivered(setup: EngineSetup) -> None:
    await setup.engine.subscribe("chat:n")
    await setup.engine.publish_join("chat:n", ALICE)
    await setup.engine.publish_leave("chat:n", BOB)
    await setup.engine.publish_control(b'{"disconnect":"bob"}')

    await setup.events.wait_for(lambda: len(setup.events.events) >= 3)
    kinds = [(e.kind, e.channel, e.info, e.payload) for e in setup.events.events]
    assert kinds == [
        ("join", "chat:n", ALICE, b""),
        ("leave", "chat:n", BOB, b""),
        ("control", "", None, b'{"disconnect":"bob"}'),
    ]


async def test_a_leave_removes_presence_and_is_published_in_one_call(setup: EngineSetup) -> None:
    engine = setup.engine
    await engine.subscribe("chat:bye")
    await engine.add_presence("chat:bye", ALICE, ttl_seconds=60)
    await engine.add_presence("chat:bye", BOB, ttl_seconds=60)
    await engine.leave_with_presence("chat:bye", ALICE)
    await setup.events.wait_for(lambda: len(setup.events.of("leave", "chat:bye")) == 1)
    (left,) = setup.events.of("leave", "chat:bye")
    assert left.info == ALICE
    assert await engine.presence("chat:bye") == {BOB.client: BOB}


async def test_ping_answers_while_serving(setup: EngineSetup) -> None:
    await setup.engine.ping()


# -- presence ----------------------------------------------------------------------


async def test_presence_add_refresh_remove_and_stats(setup: EngineSetup) -> None:
    engine = setup.engine
    assert await engine.presence("chat:p") == {}
    assert await engine.presence_stats("chat:p") == (0, 0)

    await engine.add_presence("chat:p", ALICE, ttl_seconds=60)
    await engine.add_presence("chat:p", ALICE_2, ttl_seconds=60)
    await engine.add_presence("chat:p", BOB, ttl_seconds=60)
    await engine.add_presence("chat:p", ALICE, ttl_seconds=60)  # refresh, not a second entry

    assert await engine.presence("chat:p") == {
        ALICE.client: ALICE,
        ALICE_2.client: ALICE_2,
        BOB.client: BOB,
    }
    assert await engine.presence_stats("chat:p") == (3, 2)

    await engine.remove_presence("chat:p", ALICE_2.client)
    await engine.remove_presence("chat:p", "never-there")
    await engine.remove_presence("chat:nobody", "never-there")
    assert set(await engine.presence("chat:p")) == {ALICE.client, BOB.client}
    assert await engine.presence_stats("chat:p") == (2, 2)

    await engine.remove_presence("chat:p", ALICE.client)
    await engine.remove_presence("chat:p", BOB.client)
    assert await engine.presence("chat:p") == {}


async def test_a_subscribes_presence_and_stream_state_in_one_call(setup: EngineSetup) -> None:
    """``history_with_presence`` = ``add_presence`` then ``history`` (one script on Redis): the client is
    present (with its TTL), and the stream's state and recovered publications are history's."""
    engine = setup.engine
    first = await engine.history_with_presence("chat:s", ALICE, presence_ttl_seconds=60)
    assert first == await engine.history("chat:s")  # an empty channel's epoch, fixed by the read
    assert first[1].offset == 0 and first[1].epoch
    published = [await engine.publish("chat:s", f'{{"n":{n}}}'.encode(), history=KEEP) for n in range(3)]

    since = StreamPosition(1, first[1].epoch)
    pubs, top = await engine.history_with_presence(
        "chat:s", BOB, presence_ttl_seconds=1.0, since=since, limit=-1
    )
    assert top == published[-1].position
    assert [p.offset for p in pubs] == [2, 3] and pubs[0].data == b'{"n":1}'
    assert await engine.presence("chat:s") == {ALICE.client: ALICE, BOB.client: BOB}

    other_epoch = StreamPosition(1, "another")
    pubs, top = await engine.history_with_presence(
        "chat:s", ALICE_2, presence_ttl_seconds=60, since=other_epoch, limit=-1
    )
    assert pubs == [] and top == published[-1].position  # not recovered, as history says
    await setup.let_pass(1.3)
    assert set(await engine.presence("chat:s")) == {ALICE.client, ALICE_2.client}  # BOB's 1 s is over


async def test_presence_expires_unless_refreshed(setup: EngineSetup) -> None:
    engine = setup.engine
    await engine.add_presence("chat:q", ALICE, ttl_seconds=1.0)
    await engine.add_presence("chat:q", BOB, ttl_seconds=1.0)
    await setup.let_pass(0.6)
    await engine.add_presence("chat:q", BOB, ttl_seconds=2.0)
    await setup.let_pass(0.6)

    assert set(await engine.presence("chat:q")) == {BOB.client}
    assert await engine.presence_stats("chat:q") == (1, 1)

    await setup.let_pass(1.6)
    assert await engine.presence("chat:q") == {}
    assert await engine.presence_stats("chat:q") == (0, 0)


async def test_a_short_presence_does_not_cut_a_longer_one_short(setup: EngineSetup) -> None:
    await setup.engine.add_presence("chat:r", ALICE, ttl_seconds=60)
    await setup.engine.add_presence("chat:r", BOB, ttl_seconds=0.2)
    await setup.let_pass(0.5)

    assert set(await setup.engine.presence("chat:r")) == {ALICE.client}


# -- token bucket ---------------------------------------------------------------------


async def test_token_bucket_allows_a_burst_then_the_rate(setup: EngineSetup) -> None:
    take = setup.engine.take_token
    assert await take("user:alice", rate_per_second=1, burst=2) == 0.0
    assert await take("user:alice", rate_per_second=1, burst=2) == 0.0
    wait = await take("user:alice", rate_per_second=1, burst=2)
    assert 0.0 < wait <= 1.0
    assert await take("user:bob", rate_per_second=1, burst=2) == 0.0  # buckets are per key

    await setup.let_pass(1.1)
    assert await take("user:alice", rate_per_second=1, burst=2) == 0.0
    assert await take("user:alice", rate_per_second=1, burst=2) > 0.0


async def test_token_bucket_refills_only_up_to_its_burst(setup: EngineSetup) -> None:
    take = setup.engine.take_token
    assert await take("ip:1", rate_per_second=2, burst=1) == 0.0
    await setup.let_pass(1.5)  # three tokens' worth of time, but the bucket holds one

    assert await take("ip:1", rate_per_second=2, burst=1) == 0.0
    assert await take("ip:1", rate_per_second=2, burst=1) > 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
async def test_token_bucket_rejects_impossible_parameters(
    setup: EngineSetup, rate: float, burst: int
) -> None:
    with pytest.raises(ValueError, match="token bucket"):
        await setup.engine.take_token("k", rate_per_second=rate, burst=burst)


@pytest.mark.parametrize(
    "history", [HistoryOptions(size=-1, ttl_seconds=60), HistoryOptions(size=10, ttl_seconds=0)]
)
async def test_publish_rejects_impossible_history_options(
    setup: EngineSetup, history: HistoryOptions
) -> None:
    with pytest.raises(ValueError, match="history"):
        await setup.engine.publish("chat:z", b"1", history=history)
    _, top = await setup.engine.history("chat:z")
    assert top.offset == 0  # nothing was stored


# -- cluster-wide connection slots and a person's state (domain/keys.py) -------------------------------


async def test_connection_slots_count_holders_until_released_or_expired(setup: EngineSetup) -> None:
    take = setup.engine.take_slot
    assert await take(SlotScope.ADDRESS, "10.0.0.1", "c1", limit=2, ttl_seconds=0.4)
    assert await take(SlotScope.ADDRESS, "10.0.0.1", "c2", limit=2, ttl_seconds=0.4)
    assert await take(SlotScope.ADDRESS, "10.0.0.1", "c2", limit=2, ttl_seconds=0.4)  # held already
    assert not await take(SlotScope.ADDRESS, "10.0.0.1", "c3", limit=2, ttl_seconds=0.4)
    assert await take(SlotScope.ADDRESS, "10.0.0.2", "c3", limit=2, ttl_seconds=0.4)  # per address
    assert await take(SlotScope.USER, "10.0.0.1", "c3", limit=2, ttl_seconds=0.4)  # per scope
    await setup.engine.release_slot(SlotScope.ADDRESS, "10.0.0.1", "c1")
    assert await take(SlotScope.ADDRESS, "10.0.0.1", "c3", limit=2, ttl_seconds=0.4)
    # c2 is refreshed, c3 is not: only c3's slot expires.
    await setup.let_pass(0.2)
    await setup.engine.refresh_slots([(SlotScope.ADDRESS, "10.0.0.1", "c2")], ttl_seconds=0.4)
    await setup.let_pass(0.3)
    assert await take(SlotScope.ADDRESS, "10.0.0.1", "c4", limit=2, ttl_seconds=0.4)
    assert not await take(SlotScope.ADDRESS, "10.0.0.1", "c5", limit=2, ttl_seconds=0.4)


async def test_a_persons_state_is_written_appended_read_and_erased(setup: EngineSetup) -> None:
    engine = setup.engine
    kinds = keys.USER_KINDS
    assert await engine.person_read("alice", kinds) == {}
    await engine.person_write("alice", keys.PERSON_BASELINE, b'{"frozen":true}', ttl_seconds=0.5)
    await engine.person_append("alice", keys.PERSON_REPORTS, [b"1", b"2"], max_items=3, ttl_seconds=60)
    await engine.person_append("alice", keys.PERSON_REPORTS, [b"3", b"4"], max_items=3, ttl_seconds=60)
    await engine.person_write("bob", keys.PERSON_BASELINE, b"{}", ttl_seconds=60)
    assert await engine.person_read("alice", kinds) == {
        "person.baseline": b'{"frozen":true}',
        "person.reports": [b"2", b"3", b"4"],  # the newest max_items, oldest first
    }
    await setup.let_pass(0.7)
    assert await engine.person_read("alice", kinds) == {"person.reports": [b"2", b"3", b"4"]}
    await engine.person_erase("alice", kinds)
    assert await engine.person_read("alice", kinds) == {}
    assert await engine.person_read("bob", kinds) == {"person.baseline": b"{}"}


@pytest.mark.redis
async def test_connection_slots_are_shared_by_the_workers_of_a_cluster(redis_nodes: list[Node]) -> None:
    first, second = (node.engine for node in redis_nodes)
    assert await first.take_slot(SlotScope.USER, "alice", "a1", limit=2, ttl_seconds=30)
    assert await second.take_slot(SlotScope.USER, "alice", "b1", limit=2, ttl_seconds=30)
    assert not await first.take_slot(SlotScope.USER, "alice", "a2", limit=2, ttl_seconds=30)
    await second.release_slot(SlotScope.USER, "alice", "b1")
    assert await first.take_slot(SlotScope.USER, "alice", "a2", limit=2, ttl_seconds=30)
    assert isinstance(first, RedisEngine)
    # The key is the agreed one: hash-tagged by the user (domain/keys.py).
    assert await first.client.zcard(f"{first.prefix}.conns.user.{{u:alice}}") == 2
