"""The living core's shared documents on one worker (in-memory store and engine, pycrdt clients):
permissions, the size limit, bad input, compaction, awareness withdrawal and idle GC. Across
workers with real npm yjs clients: tests/worker/transport/test_yjs_docs.py."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Set
from typing import Any

import pycrdt
import pytest
from resonance_worker.domain.channels import ChannelRules, NamespaceOptions
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.ydocs import (
    AwarenessEntry,
    AwarenessMessage,
    SyncKind,
    SyncMessage,
    awareness_message,
    decode_entry,
    parse_message,
    sync_message,
)
from resonance_worker.engines.docs import MemoryDocStore
from resonance_worker.engines.memory import MemoryEngine
from resonance_worker.living.docs import SharedDocs
from resonance_worker.living.outbox import Publisher
from resonance_worker.living_settings import LivingSettings
from resonance_worker.rpc import RpcCall, RpcError


class Present:
    def __init__(self) -> None:
        self.connections: dict[str, object] = {}
        self.by_user: Mapping[str, Set[object]] = {}
        self.draining = False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


RULES = ChannelRules(
    {
        "doc": NamespaceOptions(allow_subscribe_for_client=True, allow_publish_for_client=True),
        "notes": NamespaceOptions(allow_subscribe_for_client=True),
        "board": NamespaceOptions(allow_subscribe_for_client=True),
    }
)


async def members_of(members: frozenset[str], call: RpcCall) -> bool:
    return call.user in members


def make(
    members: frozenset[str] = frozenset(), **settings: Any
) -> tuple[SharedDocs, MemoryDocStore, Clock, Present]:
    store, clock, present = MemoryDocStore(), Clock(), Present()
    docs = SharedDocs(
        LivingSettings(**settings),
        store,
        Publisher(MemoryEngine(), RULES, on_failure=lambda: None),
        rules=RULES,
        present=present,  # type: ignore[arg-type]
        writes_notes=lambda call, room: members_of(members, call),
        clock=clock,
    )
    return docs, store, clock, present


async def send(
    docs: SharedDocs, channel: str, *messages: bytes, user: str = "ann", client: str = "c1"
) -> list[Any]:
    call = RpcCall(
        "doc.send",
        {"channel": channel, "messages": [base64.b64encode(m).decode() for m in messages]},
        user,
        client,
    )
    result = await docs.send(call)
    return [parse_message(base64.b64decode(m)) for m in result["messages"]]


def text_update(text: str) -> bytes:
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.get("t", type=pycrdt.Text).insert(0, text)
    return doc.get_update()


async def test_a_client_syncs_writes_and_a_second_reads_it_after_compaction() -> None:
    docs, store, _, _ = make(doc_compact_updates=3)
    for word in ("a", "b", "c", "d"):
        assert await send(docs, "doc:x", sync_message(SyncKind.UPDATE, text_update(word))) == []
    await docs.settle()  # the compaction runs off the writer's call
    reader: pycrdt.Doc = pycrdt.Doc()
    step2, step1 = await send(docs, "doc:x", sync_message(SyncKind.STEP1, reader.get_state()), user="ben")
    assert isinstance(step2, SyncMessage) and step2.kind is SyncKind.STEP2
    assert isinstance(step1, SyncMessage) and step1.kind is SyncKind.STEP1
    reader.apply_update(step2.payload)
    assert sorted(str(reader.get("t", type=pycrdt.Text))) == ["a", "b", "c", "d"]
    assert store.docs["doc:x"].snapshot is not None  # folded: the log was past doc_compact_updates
    assert set(docs.memory()) == {"doc:x"}


class GatedStore(MemoryDocStore):
    """The in-memory store whose compactions wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.compacting = asyncio.Event()

    async def compact(self, doc: str, snapshot: bytes, position: int, *, ttl_seconds: float) -> bool:
        self.compacting.set()
        await self.gate.wait()
        return await super().compact(doc, snapshot, position, ttl_seconds=ttl_seconds)


async def test_a_writers_call_is_answered_and_published_without_waiting_for_the_compaction() -> None:
    docs, _, _, _ = make(doc_compact_updates=2)
    docs.store = store = GatedStore()
    docs.publisher = recording = Recording()
    await send(docs, "doc:x", sync_message(SyncKind.STEP1, b"\x00"))  # the writer synced: the doc is open
    updates = [text_update(word) for word in ("a", "b", "c")]
    for update in updates:  # the second reaches doc_compact_updates: the compaction starts, gated
        answer = await asyncio.wait_for(send(docs, "doc:x", sync_message(SyncKind.UPDATE, update)), 30)
        assert answer == []
    await asyncio.wait_for(store.compacting.wait(), 30)
    assert [m.payload for _, m in recording.sent] == updates
    assert store.docs["doc:x"].snapshot is None  # still compacting
    store.gate.set()
    await docs.settle()
    kept = store.docs["doc:x"]
    assert kept.snapshot is not None and kept.base == 2 and len(kept.log) == 1
    assert docs.registry.get_sample_value("resonance_doc_update_fanout_seconds_count") == 3


async def test_permissions_per_namespace() -> None:
    update = sync_message(SyncKind.UPDATE, text_update("x"))
    docs, *_ = make(members=frozenset({"ann"}))
    assert await send(docs, "notes:r1", update) == []  # a member writes the room's notes
    with pytest.raises(RpcError) as refused:
        await send(docs, "notes:r1", update, user="cy")
    assert refused.value.code is ErrorCode.PERMISSION_DENIED and "read-only" in refused.value.message
    # A reader answers the server's step 1 with a step 2 holding nothing: no refusal, nothing stored.
    assert await send(docs, "notes:r1", sync_message(SyncKind.STEP2, b"\x00\x00"), user="cy") == []
    with pytest.raises(RpcError) as refused:
        await send(docs, "board:x", update)
    assert refused.value.code is ErrorCode.BAD_REQUEST  # not a document namespace
    with pytest.raises(RpcError) as refused:
        await send(docs, "doc:x", update, user="")
    assert refused.value.code is ErrorCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"channel": "doc:x", "messages": []}, "1-32"),
        ({"channel": "doc:x", "messages": ["%%"]}, "base64"),
        ({"channel": "doc:x", "messages": [base64.b64encode(b"\x07").decode()]}, "unknown message type 7"),
        (
            {
                "channel": "doc:x",
                "messages": [base64.b64encode(sync_message(SyncKind.UPDATE, b"zz")).decode()],
            },
            "not a Yjs",
        ),
        ({"channel": "chat:x", "messages": ["AA=="]}, "doc:<id>"),
    ],
)
async def test_bad_input_is_107_and_stores_nothing(data: dict[str, Any], problem: str) -> None:
    docs, store, *_ = make()
    with pytest.raises(RpcError) as refused:
        await docs.send(RpcCall("doc.send", data, "ann", "c1"))
    assert refused.value.code is ErrorCode.BAD_REQUEST and problem in refused.value.message
    assert store.docs == {}


async def test_size_limit_is_106_and_keeps_what_was_accepted() -> None:
    docs, store, *_ = make(doc_max_bytes=1024)
    await send(docs, "doc:x", sync_message(SyncKind.UPDATE, text_update("small")))
    with pytest.raises(RpcError) as refused:
        await send(docs, "doc:x", sync_message(SyncKind.UPDATE, text_update("x" * 2000)))
    assert (
        refused.value.code is ErrorCode.LIMIT_EXCEEDED and "size limit of 1024 bytes" in refused.value.message
    )
    assert len(store.docs["doc:x"].log) == 1


async def test_awareness_is_withdrawn_when_the_connection_goes_and_idle_documents_leave_memory() -> None:
    docs, store, clock, present = make(doc_idle_seconds=60)
    present.connections["c1"] = object()
    here = AwarenessEntry(42, 3, '{"user":{"name":"Ann"}}')
    await send(docs, "doc:x", awareness_message([here]))
    answers = await send(docs, "doc:x", sync_message(SyncKind.STEP1, b"\x00"), user="ben", client="c2")
    seen = answers[2]
    assert seen == AwarenessMessage((here,))
    await docs.step()
    assert await store.awareness("doc:x", int(clock.now * 1000)) != {}  # still connected
    del present.connections["c1"]
    await docs.step()
    assert await store.awareness("doc:x", int(clock.now * 1000)) == {}
    assert "doc:x" in docs.open
    clock.now += 61
    await docs.step()
    assert docs.open == {}


async def test_writers_on_two_workers_keep_the_log_compacted_without_anyone_joining() -> None:
    first, store, *_ = make(doc_compact_updates=4)
    second = SharedDocs(
        first.settings,
        store,  # the same store: two workers over one Redis
        first.publisher,
        rules=RULES,
        present=first.present,
        writes_notes=first.writes_notes,
        clock=first.clock,
    )
    for docs in (first, second):  # each worker has the document open (its writer synced there)
        await send(docs, "doc:x", sync_message(SyncKind.STEP1, b"\x00"))
    for i in range(20):
        await send(first if i % 2 else second, "doc:x", sync_message(SyncKind.UPDATE, text_update(f"{i},")))
    await first.settle()
    await second.settle()
    kept = store.docs["doc:x"]
    assert kept.snapshot is not None and kept.base >= 12 and len(kept.log) < 8
    chunk = await store.load("doc:x", -1)
    reader: pycrdt.Doc = pycrdt.Doc()
    for u in [chunk.snapshot or b"\x00\x00", *chunk.updates]:
        reader.apply_update(u)
    assert len(str(reader.get("t", type=pycrdt.Text))) == sum(len(f"{i},") for i in range(20))
    assert chunk.size < sum(len(text_update(f"{i},")) for i in range(20))  # the size bound shrank


class Recording(Publisher):
    """The real publisher (into the in-memory engine), noting each y-protocols message it publishes."""

    def __init__(self) -> None:
        super().__init__(MemoryEngine(), RULES, on_failure=lambda: None)
        self.sent: list[tuple[str, Any]] = []

    async def publish(self, channel: str, payload: Mapping[str, Any], *, history: bool = True) -> None:
        self.sent.append((payload["from"], parse_message(base64.b64decode(payload["m"]))))
        await super().publish(channel, payload, history=history)


async def test_awareness_past_the_rate_is_held_and_only_the_latest_state_goes_out() -> None:
    docs, store, clock, present = make(doc_awareness_per_second=5)
    docs.publisher = recording = Recording()
    present.connections["c1"] = object()
    for n in range(1, 31):  # 30 cursor moves at one instant: a burst of 5 goes out, the rest is held
        await send(docs, "doc:x", awareness_message([AwarenessEntry(7, n, f'{{"cursor":{n}}}')]))
    clocks = [m.entries[0].clock for _, m in recording.sent]
    assert clocks == [1, 2, 3, 4, 5]
    await docs.step()  # the held state is released: the newest one, the 24 between are dropped
    assert [m.entries[0].clock for _, m in recording.sent[5:]] == [30]
    assert docs.awareness_rate.superseded == 24
    assert docs.registry.get_sample_value("resonance_doc_awareness_superseded_total") == 24  # exported
    stored = await store.awareness("doc:x", int(clock.now * 1000))
    assert decode_entry(stored[7]).clock == 30  # a late joiner reads the latest too
    clock.now += 1.0  # a second later the bucket lets the next one through at once
    await send(docs, "doc:x", awareness_message([AwarenessEntry(7, 31, '{"cursor":31}')]))
    assert recording.sent[-1][1].entries[0].clock == 31
    # Another connection's held state is dropped when it goes (its awareness is withdrawn instead).
    present.connections["c2"] = object()
    for n in range(1, 8):
        await send(docs, "doc:x", awareness_message([AwarenessEntry(8, n, "{}")]), client="c2")
    del present.connections["c2"]
    await docs.step()
    from_c2 = [m.entries[0] for c, m in recording.sent if c == "c2"]
    assert [e.clock for e in from_c2] == [1, 2, 3, 4, 5, 6] and from_c2[-1].gone  # 6: the withdrawal
