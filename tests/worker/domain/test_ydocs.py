"""The y-protocols messages (against pycrdt's own encoder) and document permissions."""

from __future__ import annotations

import pycrdt
import pytest
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions
from resonance_worker.domain.ydocs import (
    Access,
    AwarenessEntry,
    AwarenessMessage,
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
