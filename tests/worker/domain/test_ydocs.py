"""The y-protocols messages (against pycrdt's own encoder) and document permissions."""

from __future__ import annotations

import pycrdt
import pytest
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions
from resonance_worker.domain.ydocs import (
    Access,
    AwarenessEntry,
    AwarenessMessage,
    AwarenessRate,
    DocMessageError,
    QueryAwareness,
    SyncKind,
    SyncMessage,
    access,
    awareness_message,
    decode_entry,
    doc_channel_of,
    encode_entry,
    parse_message,
    sync_message,
)


def test_sync_messages_match_pycrdt_both_ways() -> None:
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.get("t", type=pycrdt.Text).insert(0, "héllo")
    step1 = pycrdt.create_sync_message(doc)
    assert parse_message(step1) == SyncMessage(SyncKind.STEP1, doc.get_state())
    update = doc.get_update()
    assert parse_message(pycrdt.create_update_message(update)) == SyncMessage(SyncKind.UPDATE, update)
    assert sync_message(SyncKind.UPDATE, update) == pycrdt.create_update_message(update)
    assert sync_message(SyncKind.STEP1, doc.get_state()) == step1


def test_awareness_round_trip_and_entries() -> None:
    entries = (AwarenessEntry(7, 3, '{"user":{"name":"Ann"}}'), AwarenessEntry(2**40, 1, "null"))
    raw = awareness_message(entries)
    assert parse_message(raw) == AwarenessMessage(entries)
    assert entries[1].gone and not entries[0].gone
    assert decode_entry(encode_entry(entries[0])) == entries[0]
    assert parse_message(b"\x03") == QueryAwareness()


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "ends inside a number"),
        (b"\x09", "unknown message type 9"),
        (b"\x00\x05\x00", "unknown sync message type 5"),
        (b"\x00\x02\x05ab", "ends inside a byte string"),
        (b"\x00\x02\x01a!", "bytes after the end"),
        (bytes([1, 4, 1, 1, 1, 5]) + b"{", "bytes after the end"),
        (awareness_message([AwarenessEntry(1, 1, "{")]), "not JSON"),
    ],
)
def test_malformed_messages_are_refused_with_what_is_wrong(raw: bytes, problem: str) -> None:
    with pytest.raises(DocMessageError, match=problem):
        parse_message(raw)


def test_document_channels() -> None:
    assert doc_channel_of({"channel": "doc:plan-1"}) == "doc:plan-1"
    assert doc_channel_of({"channel": "notes:room_7"}) == "notes:room_7"
    assert doc_channel_of({"channel": "chat:x"}) is None
    assert doc_channel_of({"channel": "doc:"}) is None
    assert doc_channel_of({"channel": "doc:a b"}) is None
    assert doc_channel_of("doc:x") is None


def test_permissions_per_namespace() -> None:
    rules = ChannelRules(
        {
            "doc": NamespaceOptions(
                allow_subscribe_for_client=True,
                allow_publish_for_client=True,
                allow_user_limited_channels=True,
            ),
            "notes": NamespaceOptions(allow_subscribe_for_client=True),
            "board": NamespaceOptions(allow_subscribe_for_client=True),  # read-only documents
        }
    )
    assert access(rules, "doc:x", "ann") is Access.WRITE
    assert access(rules, "doc:x", "") is Access.NONE  # anonymous: not allowed to subscribe
    assert access(rules, "board:x", "ann") is Access.READ
    assert access(rules, "doc:x#ann,ben", "ann") is Access.WRITE
    assert access(rules, "doc:x#ann,ben", "cy") is Access.NONE
    assert access(rules, "notes:r1", "ann", room_members=frozenset({"ann"})) is Access.WRITE
    assert access(rules, "notes:r1", "cy", room_members=frozenset({"ann"})) is Access.READ
    assert access(rules, "nope:r1", "ann") is Access.NONE


def test_the_awareness_rate_never_lets_an_older_state_replace_a_newer_one() -> None:
    rate = AwarenessRate(per_second=1)
    first = AwarenessEntry(1, 5, "{}")
    assert rate.offer("c", "doc:x", (first,), now=0.0) == (first,)
    newer, older, other = (
        AwarenessEntry(1, 9, '{"a":1}'),
        AwarenessEntry(1, 7, "{}"),
        AwarenessEntry(2, 1, "{}"),
    )
    for entry in (newer, older, other):
        assert rate.offer("c", "doc:x", (entry,), now=0.1) == ()
    assert rate.superseded == 0  # the older one came after the newer: ignored, not counted
    # Half a second later still no token; at 1.0 s one: the held entries go out with the new message,
    # except the held state of a client the message itself brings anew.
    assert rate.offer("c", "doc:x", (AwarenessEntry(2, 2, "{}"),), now=0.5) == ()
    assert rate.superseded == 1
    fresh = AwarenessEntry(3, 1, "{}")
    assert rate.offer("c", "doc:x", (fresh,), now=1.2) == (newer, AwarenessEntry(2, 2, "{}"), fresh)
    assert rate.due({"c"}) == []
