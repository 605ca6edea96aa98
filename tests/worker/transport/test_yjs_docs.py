"""Shared Yjs documents across two workers over one real Redis, edited by real npm ``yjs``
clients (Node, through the ``resonance-yjs`` provider in clients/yjs-provider on centrifuge-js).

Each client is a Node process (tests/js/ydoc.mjs); half of them connect to each worker. The
property test runs many random schedules (seeded, so a failure names its seed): every client
edits concurrently (text inserts and deletes, map sets) and the documents must converge.
"""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import centrifuge
import pycrdt
import pytest
from resonance_worker.domain.ydocs import SyncKind, parse_message, sync_message

from tests.harness.jsclient import JsClient
from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients

pytestmark = [pytest.mark.redis, pytest.mark.node]

SCHEDULES = 12


@pytest.fixture(scope="module")
def pair(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two workers for the module (each test uses its own documents)."""
    env = {
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": redis_server.url,
        "RESONANCE_REDIS_PREFIX": f"ydoc-{uuid.uuid4().hex[:8]}",
        "RESONANCE_LIVING__DOC_COMPACT_UPDATES": "8",  # compaction happens within the tests
        "RESONANCE_LIVING__DOC_MAX_BYTES": "20000",
    }
    tmp = tmp_path_factory.mktemp("ydocs")
    workers = [WorkerProcess(tmp, env, name=name).start() for name in ("worker-a", "worker-b")]
    yield workers[0], workers[1]
    for worker in workers:
        worker.stop()


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def editor(stack: AsyncExitStack, worker: WorkerProcess, user: str, encoding: str = "json") -> JsClient:
    js = await stack.enter_async_context(JsClient(script="ydoc.mjs", node_args=("--preserve-symlinks",)))
    await js.call("connect", url=worker.ws_url, token=worker.token(user), encoding=encoding)
    return js


async def opened(js: JsClient, channel: str, name: str | None = None, fast_ms: float | None = None) -> None:
    await js.call("open", channel=channel, name=name, fastMs=fast_ms)
    await js.wait_for(
        lambda e: e.get("event") == "synced" and e["channel"] == channel and e["synced"], what="sync"
    )


async def converged(clients: list[JsClient], channel: str, timeout: float = 15.0) -> dict[str, Any]:
    """Wait until every client holds the same text and map (and the same state vector)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        reads = [await c.call("flush", channel=channel) for c in clients]
        views = {(r["text"], repr(sorted(r["map"].items())), r["state"]) for r in reads}
        if len(views) == 1:
            return reads[0]
        if loop.time() > deadline:
            raise AssertionError(f"not converged: {[(r['text'], r['map']) for r in reads]}")
        await asyncio.sleep(0.1)


def random_ops(rng: random.Random, n: int) -> list[list[Any]]:
    ops: list[list[Any]] = []
    for _ in range(n):
        kind = rng.choice(["ins", "ins", "del", "set"])
        if kind == "ins":
            ops.append(["ins", rng.randrange(1000), rng.choice(["a", "bc", "déf", "🙂", "\n"])])
        elif kind == "del":
            ops.append(["del", rng.randrange(1000), rng.randrange(1, 4)])
        else:
            ops.append(["set", f"k{rng.randrange(5)}", rng.randrange(100)])
    return ops


async def test_random_concurrent_edits_converge_across_workers(
    pair: tuple[WorkerProcess, WorkerProcess], stack: AsyncExitStack
) -> None:
    a, b = pair
    clients = [await editor(stack, worker, f"ed{i}") for i, worker in enumerate([a, b, a, b])]
    for seed in range(SCHEDULES):
        rng = random.Random(seed)
        channel = f"doc:prop-{seed}"
        for js in clients:
            await opened(js, channel)

        async def edit(js: JsClient, rng: random.Random = rng, channel: str = channel) -> None:
            for _ in range(rng.randrange(1, 5)):  # bursts, interleaved by the event loops
                await js.call("edit", channel=channel, ops=random_ops(rng, rng.randrange(1, 6)))
                await asyncio.sleep(rng.random() * 0.02)

        order = clients[:]
        rng.shuffle(order)
        await asyncio.gather(*(edit(js) for js in order))
        try:
            final = await converged(clients, channel)
        except AssertionError as exc:
            raise AssertionError(f"schedule seed={seed}: {exc}") from None
        assert final["text"] or final["map"], f"seed={seed}: nothing was edited"


async def test_late_joiner_on_the_other_worker_gets_the_whole_document(
    pair: tuple[WorkerProcess, WorkerProcess], stack: AsyncExitStack
) -> None:
    a, b = pair
    writer = await editor(stack, a, "writer")
    await opened(writer, "doc:late")
    for i in range(30):  # past doc_compact_updates several times: snapshot + log tail
        await writer.call(
            "edit", channel="doc:late", ops=[["app", 0, f"line {i}\n"], ["set", f"k{i % 3}", i]]
        )
    written = await writer.call("flush", channel="doc:late")
    late = await editor(stack, b, "late")
    await opened(late, "doc:late")
    got = await late.call("read", channel="doc:late")
    assert got["text"] == written["text"] == "".join(f"line {i}\n" for i in range(30))
    assert got["map"] == {"k0": 27, "k1": 28, "k2": 29}


async def test_a_protobuf_editor_and_a_json_editor_share_a_document(
    pair: tuple[WorkerProcess, WorkerProcess], stack: AsyncExitStack
) -> None:
    """centrifuge-js's protobuf build with the provider's JSON_BYTES codec (the data as JSON bytes) on
    one worker, the JSON SDK on the other: both edit at once, converge and see each other's awareness."""
    a, b = pair
    pb, js = await editor(stack, a, "pia", "protobuf"), await editor(stack, b, "jon")
    await asyncio.gather(opened(pb, "doc:mixed", "pia"), opened(js, "doc:mixed", "jon"))
    await asyncio.gather(
        pb.call("edit", channel="doc:mixed", ops=[["app", 0, "from protobuf "], ["set", "pb", 1]]),
        js.call("edit", channel="doc:mixed", ops=[["app", 0, "from json "], ["set", "js", 2]]),
    )
    final = await converged([pb, js], "doc:mixed")
    assert sorted(final["text"].split()) == ["from", "from", "json", "protobuf"]
    assert final["map"] == {"pb": 1, "js": 2}
    for reader, other in ((pb, "jon"), (js, "pia")):
        await wait_peers(reader, "doc:mixed", lambda names, other=other: other in names)  # type: ignore[misc]


async def test_awareness_crosses_workers_and_leaves_with_the_connection(
    pair: tuple[WorkerProcess, WorkerProcess], stack: AsyncExitStack
) -> None:
    a, b = pair
    ann = await editor(stack, a, "ann")
    await opened(ann, "doc:aware", name="Ann")
    ben = JsClient(script="ydoc.mjs", node_args=("--preserve-symlinks",))
    await ben.start()
    try:
        await ben.call("connect", url=b.ws_url, token=b.token("ben"))
        await opened(ben, "doc:aware", name="Ben")  # a late joiner: Ann's state comes with the sync
        assert "Ann" in {p["name"] for p in await ben.call("peers", channel="doc:aware")}
        await wait_peers(ann, "doc:aware", lambda names: "Ben" in names)
    finally:
        await ben.close()  # the process goes away: its worker withdraws Ben's state
    await wait_peers(ann, "doc:aware", lambda names: "Ben" not in names)


async def wait_peers(js: JsClient, channel: str, ok: Callable[[set[str | None]], bool]) -> None:
    for _ in range(150):
        names = {p["name"] for p in await js.call("peers", channel=channel)}
        if ok(names):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"peers stayed {names}")


async def test_offline_edits_merge_on_reconnect(
    pair: tuple[WorkerProcess, WorkerProcess], stack: AsyncExitStack
) -> None:
    a, b = pair
    away = await editor(stack, a, "away")
    home = await editor(stack, b, "home")
    for js in (away, home):
        await opened(js, "doc:offline")
    await home.call("edit", channel="doc:offline", ops=[["ins", 0, "shared "]])
    await converged([away, home], "doc:offline")
    await away.call("disconnect")
    await away.call("edit", channel="doc:offline", ops=[["app", 0, "offline"], ["set", "by", "away"]])
    await home.call("edit", channel="doc:offline", ops=[["ins", 0, "online "], ["set", "other", 1]])
    await away.call("reconnect")
    final = await converged([away, home], "doc:offline")
    assert final["text"] == "online shared offline"
    assert final["map"] == {"by": "away", "other": 1}


@pytest.mark.parametrize(("fast_ms", "calls"), [(10**9, {"total": 5, "max": 4}), (0, {"total": 2, "max": 1})])
async def test_edits_go_at_once_up_to_a_window_of_calls_while_round_trips_are_fast(
    pair: tuple[WorkerProcess, WorkerProcess], stack: AsyncExitStack, fast_ms: int, calls: dict[str, int]
) -> None:
    """The provider sends an edit without waiting for the previous doc.send's answer, up to 4 calls
    unanswered; what is made meanwhile waits and goes merged in one call. Eight edits made in one turn
    of the writer's event loop: four calls at once, then one with the other four. While the smoothed
    round trip is not under ``fastMs`` (here: never), one call at a time: one, then seven merged."""
    a, b = pair
    channel = f"doc:window-{fast_ms}"
    writer = await editor(stack, a, "quick")
    reader = await editor(stack, b, "slow")
    await opened(writer, channel, fast_ms=fast_ms)
    await opened(reader, channel)
    await writer.call("flush", channel=channel)
    await writer.call("calls")  # the opening's calls are not counted
    await writer.call("edit", channel=channel, ops=[["app", 0, str(i)] for i in range(8)])
    assert await writer.call("calls") == calls
    final = await converged([writer, reader], channel)
    assert final["text"] == "01234567"


async def test_edits_unanswered_when_the_connection_drops_arrive_after_the_reconnect(
    pair: tuple[WorkerProcess, WorkerProcess], stack: AsyncExitStack
) -> None:
    """Calls in flight when the connection closes are failed, not answered: what they carried goes up
    again in the sync after the resubscribe (whether the server had stored it or not)."""
    a, b = pair
    writer = await editor(stack, a, "dropped")
    reader = await editor(stack, b, "steady")
    await opened(writer, "doc:drop", fast_ms=10**9)  # the whole window, whatever the machine's load
    await opened(reader, "doc:drop")
    await writer.call("edit", channel="doc:drop", ops=[["app", 0, str(i)] for i in range(6)], drop=True)
    assert not (await writer.call("read", channel="doc:drop"))["synced"]
    await writer.call("reconnect")
    final = await converged([writer, reader], "doc:drop")
    assert final["text"] == "012345"


async def test_size_limit_refuses_an_update_with_a_clear_error(
    pair: tuple[WorkerProcess, WorkerProcess], stack: AsyncExitStack
) -> None:
    a, _ = pair
    js = await editor(stack, a, "big")
    await opened(js, "doc:big")
    await js.call("edit", channel="doc:big", ops=[["ins", 0, "x" * 25_000]])
    error = await js.wait_for(lambda e: e.get("event") == "doc_error", what="doc_error")
    assert error["code"] == 106 and "size limit of 20000 bytes" in error["message"]
    # What was accepted before stays, and a small edit still goes through.
    other = await editor(stack, a, "other")
    await opened(other, "doc:big")
    assert (await other.call("read", channel="doc:big"))["text"] == ""
    await other.call("edit", channel="doc:big", ops=[["set", "ok", True]])
    assert error["channel"] == "doc:big"


async def test_a_room_member_joined_on_the_other_worker_writes_the_notes_here(
    pair: tuple[WorkerProcess, WorkerProcess], clients: Clients
) -> None:
    """notes:<room> is written by the room's members on any worker: a person who joined the room through
    worker A writes the notes through a connection on worker B, whether B learns it from the person's
    stored rooms (B's first living call for them) or, when B had read the person before the join, from
    the room's shared roster; someone outside the room is still refused there."""
    a, b = pair
    for user, known_to_b_first in (("wen", False), ("wu", True)):
        on_b, _ = await clients.connected(b.ws_url, b.token(user))
        if known_to_b_first:  # B reads the person (no rooms yet) before they join on A
            await on_b.rpc("state.get", {})
        on_a, _ = await clients.connected(a.ws_url, a.token(user))
        await on_a.rpc("room.join", {"room": f"far-{user}"})
        reply = await on_b.rpc("doc.send", {"channel": f"notes:far-{user}", "messages": [notes_update(user)]})
        assert reply.data == {"messages": []}
    outsider, _ = await clients.connected(b.ws_url, b.token("otto"))
    with pytest.raises(centrifuge.ReplyError) as refused:
        await outsider.rpc("doc.send", {"channel": "notes:far-wu", "messages": [notes_update("graffiti")]})
    assert refused.value.code == 103 and "read-only" in refused.value.message
    reader = await outsider.rpc("doc.send", {"channel": "notes:far-wu", "messages": [step1_b64()]})
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.apply_update(parse_message(base64.b64decode(reader.data["messages"][0])).payload)  # type: ignore[union-attr]
    assert str(doc.get("t", type=pycrdt.Text)) == "wu"


def notes_update(text: str) -> str:
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.get("t", type=pycrdt.Text).insert(0, text)
    return base64.b64encode(sync_message(SyncKind.UPDATE, doc.get_update())).decode()


def step1_b64() -> str:
    return base64.b64encode(sync_message(SyncKind.STEP1, pycrdt.Doc().get_state())).decode()
