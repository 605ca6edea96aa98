"""Shared Yjs documents across workers: the ``doc.send`` RPC method, the open documents, their GC.

A client opens a document by subscribing to its channel (``doc:<id>``, ``notes:<room>``) and
sending the Yjs sync step 1 with ``doc.send``; the answer holds step 2 (what it lacks), the
server's step 1 (so the client sends what the server lacks: offline edits merge) and everyone's
awareness. Updates and awareness sent with ``doc.send`` are appended to the document's log in the
store (:mod:`resonance_worker.engines.docs`) and published on the channel, through the engine, to
the subscribers on every worker (on Redis, the append publishes in the same script: one round trip
per update). The messages are parsed and permissions decided in
:mod:`resonance_worker.domain.ydocs`.

Any worker serves any document: an open document here is a pycrdt ``Doc`` plus the position in
the store's log it has folded in; before it answers a step 1 it reads what the log gained since
(so a late joiner on another worker gets the whole document). When the log grows past
``doc_compact_updates`` the worker folds it into a snapshot. A document nobody touched for
``doc_idle_seconds`` is dropped from memory (:meth:`SharedDocs.step`); its connections' awareness
states are withdrawn (published as ``null``) when they disconnect.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pycrdt
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from resonance_worker.domain.channels import ChannelRules
from resonance_worker.domain.codes import ErrorCode
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
    room_of_notes,
    sync_message,
)
from resonance_worker.engines.docs import DocStore, DocTooLargeError
from resonance_worker.errors import EngineError
from resonance_worker.living.outbox import Publisher
from resonance_worker.living.roster import Present
from resonance_worker.living_settings import LivingSettings
from resonance_worker.rpc import RpcCall, RpcError

log = logging.getLogger("resonance.worker.docs")

DOC_STEP_SECONDS = 1.0
"""How often gone connections' awareness is withdrawn and idle documents are dropped."""
MAX_MESSAGES = 32
"""Messages in one ``doc.send`` call."""
EMPTY_UPDATES = (b"\x00\x00", b"")
"""A Yjs V1 update with nothing in it: what a reader's step 2 holds (it has written nothing)."""
AWARENESS_TIMEOUT_MS = 30_000
"""A client's awareness lives this long unless renewed (y-protocols renews every 15 s)."""


@dataclass
class OpenDoc:
    """A document this worker holds: the CRDT and the position in the log it has folded in."""

    doc: pycrdt.Doc[Any] = field(default_factory=pycrdt.Doc)
    position: int = -1
    """-1: nothing read yet (the first read takes the snapshot)."""
    updates_since_snapshot: int = 0
    touched: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Superseded(Collector):
    """``resonance_doc_awareness_superseded_total``: read from the awareness rate at scrape time."""

    def __init__(self, rate: AwarenessRate) -> None:
        self.rate = rate

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "resonance_doc_awareness_superseded",
            "Awareness states held back by the per-connection rate (doc_awareness_per_second) and "
            "dropped because a newer state of the same Yjs client replaced them before they went out.",
            value=self.rate.superseded,
        )


def _decode(data: object) -> list[bytes]:
    if not isinstance(data, dict):
        raise RpcError(ErrorCode.BAD_REQUEST, "doc.send takes a JSON object")
    messages = data.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise RpcError(ErrorCode.BAD_REQUEST, f"messages must be a list of 1-{MAX_MESSAGES} base64 strings")
    try:
        return [base64.b64decode(m, validate=True) for m in messages]
    except (TypeError, ValueError, binascii.Error):
        raise RpcError(ErrorCode.BAD_REQUEST, "messages must be base64 strings") from None


def _writes(message: Any) -> bool:
    """Whether a message would write: an update or a step 2 with something in it."""
    return (
        isinstance(message, SyncMessage)
        and message.kind is not SyncKind.STEP1
        and message.payload not in EMPTY_UPDATES
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _publication(message: bytes, client: str) -> dict[str, str]:
    """A document channel's publication: ``{"m": <base64 message>, "from": <client id>}``."""
    return {"m": _b64(message), "from": client}


class SharedDocs:
    """The documents of one worker and the ``doc.send`` method."""

    def __init__(
        self,
        settings: LivingSettings,
        store: DocStore,
        publisher: Publisher,
        *,
        rules: ChannelRules,
        present: Present,
        writes_notes: Callable[[RpcCall, str], Awaitable[bool]],
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.rules = rules
        self.present = present
        self.writes_notes = writes_notes
        """Whether the caller is a member of the room (on any worker): they write its notes."""
        self.clock = clock
        self.open: dict[str, OpenDoc] = {}
        self._aware: dict[str, dict[str, set[int]]] = {}
        """connection → document → the Yjs client ids it announced (withdrawn when it goes)."""
        self.awareness_rate = AwarenessRate(settings.doc_awareness_per_second)
        """Each connection's awareness per document, bounded; superseded states dropped."""
        self.registry = registry if registry is not None else CollectorRegistry()
        """Where the documents' metrics are (the worker's registry)."""
        self.registry.register(_Superseded(self.awareness_rate))
        self._folding: dict[str, asyncio.Task[object]] = {}
        """Documents with a read and compaction running in the background (one at a time each)."""
        self.fanout_seconds = Histogram(
            "resonance_doc_update_fanout_seconds",
            "From a doc.send call's start on this worker to its document update handed to the engine "
            "for fan-out (decoded, appended to the log, published); the fan-out on each worker after "
            "that is resonance_delivery_latency_seconds.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    # -- doc.send ----------

    async def send(self, call: RpcCall) -> Any:
        """``doc.send``: y-protocols messages for one document; the answers (base64) in order."""
        started = time.perf_counter()
        channel = doc_channel_of(call.data)
        if channel is None:
            raise RpcError(
                ErrorCode.BAD_REQUEST,
                "channel must be doc:<id> or notes:<room> (id: 1-128 of A-Z a-z 0-9 _ . -)",
            )
        raws = _decode(call.data)
        room = room_of_notes(channel)
        replies: list[bytes] = []
        try:
            messages = [parse_message(raw) for raw in raws]
            members = None
            if room is not None:  # membership is looked up (maybe in the engine) only to write
                writes = any(
                    isinstance(m, SyncMessage)
                    and m.kind is not SyncKind.STEP1
                    and m.payload not in EMPTY_UPDATES
                    for m in messages
                )
                member = writes and await self.writes_notes(call, room)
                members = frozenset({call.user}) if member else frozenset()
            allowed = access(self.rules, channel, call.user, room_members=members)
            if allowed is Access.NONE:
                raise RpcError(ErrorCode.PERMISSION_DENIED, f"no access to {channel}")
            for message in messages:
                replies += await self._handle(channel, message, allowed, call.client, started)
        except DocMessageError as exc:
            raise RpcError(ErrorCode.BAD_REQUEST, f"doc.send: {exc}") from None
        except EngineError as exc:
            log.warning("document store failed", extra={"channel": channel, "error": str(exc)})
            raise RpcError(ErrorCode.INTERNAL, "document store unavailable, retry") from None
        return {"messages": [_b64(r) for r in replies]}

    async def _handle(
        self, channel: str, message: Any, allowed: Access, client: str, started: float
    ) -> list[bytes]:
        match message:
            case SyncMessage(kind=SyncKind.STEP1, payload=vector):
                opened = await self._caught_up(channel)
                try:
                    missing = opened.doc.get_update(vector)
                except ValueError:
                    raise DocMessageError("sync step 1 holds no valid state vector") from None
                state = opened.doc.get_state()
                answer = [sync_message(SyncKind.STEP2, missing), sync_message(SyncKind.STEP1, state)]
                present = await self._awareness(channel)
                return answer + ([awareness_message(present)] if present else [])
            case SyncMessage(payload=update) if update in EMPTY_UPDATES:
                return []  # a step 2 with nothing new (every reader answers the server's step 1 so)
            case SyncMessage(payload=update):  # step 2 or update: both are updates
                if allowed is not Access.WRITE:
                    raise RpcError(ErrorCode.PERMISSION_DENIED, f"{channel} is read-only for you")
                await self._update(channel, update, client, started)
                return []
            case AwarenessMessage(entries=entries):
                now_announced = self.awareness_rate.offer(client, channel, entries, self.clock())
                await self._announce(channel, now_announced, client)
                return []
            case QueryAwareness():
                present = await self._awareness(channel)
                return [awareness_message(present)]
        raise DocMessageError("unhandled message")

    async def _update(self, channel: str, update: bytes, client: str, started: float) -> None:
        try:
            pycrdt.get_state(update)  # decodes it: a malformed update is refused before it is stored
        except ValueError:
            raise DocMessageError("not a Yjs (V1) update") from None
        message = sync_message(SyncKind.UPDATE, update)
        together = self.store.publishes  # the append publishes too: one round trip to Redis
        try:
            position = await self.store.append(
                channel,
                update,
                limit=self.settings.doc_max_bytes,
                ttl_seconds=self.settings.doc_ttl_seconds,
                publish=orjson.dumps(_publication(message, client)) if together else None,
            )
        except DocTooLargeError as exc:
            raise RpcError(
                ErrorCode.LIMIT_EXCEEDED,
                f"{channel} would exceed its size limit of {exc.limit} bytes (has {exc.size}): refused",
            ) from None
        if not together:
            await self._publish(channel, message, client)
        self.fanout_seconds.observe(time.perf_counter() - started)
        self._fold(channel, update, position)

    def _fold(self, channel: str, update: bytes, position: int) -> None:
        """Keep the log short while people only write (no one joins to trigger a read): fold an update
        in when it is the next one in the log; once the log is ``doc_compact_updates`` ahead of what
        this worker holds, read what other workers wrote and compact. The reads and the compaction run
        in a task of the document's own, off the path of the call that wrote (its reply and the next
        updates do not wait for them)."""
        opened = self.open.get(channel)
        if opened is not None and opened.position == position - 1 and not opened.lock.locked():
            opened.doc.apply_update(update)  # the next in the log: folded in without a read
            opened.position = position
            opened.updates_since_snapshot += 1
            opened.touched = self.clock()
            if opened.updates_since_snapshot >= self.settings.doc_compact_updates:
                self._in_background(channel, self._compact_held(channel, opened))
        elif opened is None or position - opened.position >= self.settings.doc_compact_updates:
            self._in_background(channel, self._caught_up(channel))  # others wrote: read, fold, compact

    def _in_background(self, channel: str, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work`` for ``channel`` unless a task of the document's is running (it does the same)."""
        if channel in self._folding:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work)
        self._folding[channel] = task
        task.add_done_callback(lambda done: self._folded(channel, done))

    def _folded(self, channel: str, task: asyncio.Task[object]) -> None:
        self._folding.pop(channel, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("document not compacted", extra={"channel": channel, "error": str(exc)})

    async def _compact_held(self, channel: str, opened: OpenDoc) -> None:
        async with opened.lock:
            if opened.updates_since_snapshot >= self.settings.doc_compact_updates:
                await self._compact(channel, opened)

    async def settle(self) -> None:
        """Wait until the documents' reads and compactions started so far are done."""
        while self._folding:
            await asyncio.wait(list(self._folding.values()))

    async def _caught_up(self, channel: str) -> OpenDoc:
        """The open document, with everything the log holds folded in (compacted when it is long)."""
        opened = self.open.get(channel)
        if opened is None:
            opened = self.open[channel] = OpenDoc()
        opened.touched = self.clock()
        async with opened.lock:
            chunk = await self.store.load(channel, opened.position)
            if chunk.snapshot is not None:
                opened.doc.apply_update(chunk.snapshot)
                opened.updates_since_snapshot = 0
            for update in chunk.updates:
                opened.doc.apply_update(update)
            opened.updates_since_snapshot += len(chunk.updates)
            opened.position = chunk.position
            if opened.updates_since_snapshot >= self.settings.doc_compact_updates:
                await self._compact(channel, opened)
        return opened

    async def _compact(self, channel: str, opened: OpenDoc) -> None:
        snapshot = opened.doc.get_update()
        compacted = await self.store.compact(
            channel, snapshot, opened.position, ttl_seconds=self.settings.doc_ttl_seconds
        )
        opened.updates_since_snapshot = 0
        if compacted:
            log.info("document compacted", extra={"channel": channel, "bytes": len(snapshot)})

    # -- awareness ----------

    async def _announce(self, channel: str, entries: tuple[AwarenessEntry, ...], client: str) -> None:
        if not entries:
            return
        mine = self._aware.setdefault(client, {}).setdefault(channel, set())
        live = {e.client_id: encode_entry(e) for e in entries if not e.gone}
        gone = [e.client_id for e in entries if e.gone]
        mine.update(live)
        mine.difference_update(gone)
        now_ms = int(self.clock() * 1000)
        if live:
            await self.store.set_awareness(
                channel,
                live,
                expires_ms=now_ms + AWARENESS_TIMEOUT_MS,
                ttl_seconds=AWARENESS_TIMEOUT_MS / 1000,
            )
        await self.store.remove_awareness(channel, gone)
        await self._publish(channel, awareness_message(entries), client)

    async def _awareness(self, channel: str) -> list[AwarenessEntry]:
        found = await self.store.awareness(channel, int(self.clock() * 1000))
        return [decode_entry(raw) for raw in found.values()]

    # -- the step: disconnects and GC ----------

    async def step(self) -> None:
        """Release the awareness held back by the rate; withdraw the awareness of connections that are
        gone; drop documents idle in memory."""
        for client, channel, entries in self.awareness_rate.due(self.present.connections):
            try:
                await self._announce(channel, entries, client)
            except EngineError as exc:  # a newer state, or the next step, carries it
                log.warning("held awareness not announced", extra={"channel": channel, "error": str(exc)})
        for client in [c for c in self._aware if c not in self.present.connections]:
            for channel, ids in self._aware.pop(client).items():
                await self._withdraw(channel, ids, client)
        now = self.clock()
        for channel, opened in list(self.open.items()):
            if now - opened.touched >= self.settings.doc_idle_seconds and not opened.lock.locked():
                del self.open[channel]

    async def _withdraw(self, channel: str, ids: set[int], client: str) -> None:
        if not ids:
            return
        try:
            found = await self.store.awareness(channel, int(self.clock() * 1000))
            await self.store.remove_awareness(channel, sorted(ids))
        except EngineError as exc:  # the entries expire on their own
            log.warning("awareness not withdrawn", extra={"channel": channel, "error": str(exc)})
            return
        clocks = {i: decode_entry(found[i]).clock if i in found else 0 for i in ids}
        gone = [AwarenessEntry(i, clocks[i] + 1, "null") for i in sorted(ids)]
        await self._publish(channel, awareness_message(gone), client)

    async def _publish(self, channel: str, message: bytes, client: str) -> None:
        await self.publisher.publish(channel, _publication(message, client), history=False)

    def memory(self) -> dict[str, int]:
        """Open documents and the bytes of their encoded state (for the gauges and the benchmark)."""
        return {channel: len(opened.doc.get_update()) for channel, opened in self.open.items()}
