"""Shared Yjs documents, sans I/O: the y-protocols messages, document channels and who may do what.

A shared document is a channel of a document namespace (``doc:<id>``, ``notes:<room>``). Clients
speak the standard Yjs protocols (``y-protocols``: sync and awareness) over the existing
connection: each message is the y-protocols binary message, base64 in JSON, sent with the
``doc.send`` RPC and received in the channel's publications (docs/protocol.md, "Shared documents").

The wire format is lib0's: a varuint outer type (0 sync, 1 awareness, 3 query awareness), then for
sync a varuint subtype (0 step 1 = a state vector, 1 step 2 = an update, 2 update) and the payload
as varuint-length bytes; for awareness, varuint-length bytes holding a count and per client
``clientID, clock, JSON state`` (``null`` state: the client is gone). The document itself (the CRDT)
is pycrdt's, held by the living core (``living.docs``); this module only parses, builds and decides.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Collection
from dataclasses import dataclass

from resonance_worker.domain.channels import NAMESPACE_BOUNDARY, USER_BOUNDARY, ChannelRules, NamespaceOptions
from resonance_worker.domain.limits import TokenBucket

DOC_NAMESPACE = "doc"
"""Documents anyone the namespace lets in may open: ``doc:<id>``."""
NOTES_NAMESPACE = "notes"
"""A room's shared notes: ``notes:<room>``; its members (on any worker) write, as the namespace lets read."""
DOC_NAMESPACES = frozenset({DOC_NAMESPACE, NOTES_NAMESPACE})

_DOC_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}(#[A-Za-z0-9_.,\-]+)?$")

MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_QUERY_AWARENESS = 3
SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2
MAX_SAFE_INTEGER = 2**53 - 1


class DocMessageError(ValueError):
    """A message that is not a well-formed y-protocols sync or awareness message."""


# -- lib0 encoding ----------


def write_varuint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varuint must be >= 0")
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)


def write_varbytes(out: bytearray, data: bytes) -> None:
    write_varuint(out, len(data))
    out += data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def varuint(self) -> int:
        value = shift = 0
        while True:
            if self.pos >= len(self.data):
                raise DocMessageError("message ends inside a number")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise DocMessageError("number too long")

    def varbytes(self) -> bytes:
        length = self.varuint()
        if self.pos + length > len(self.data):
            raise DocMessageError("message ends inside a byte string")
        chunk = self.data[self.pos : self.pos + length]
        self.pos += length
        return chunk

    def done(self) -> None:
        if self.pos != len(self.data):
            raise DocMessageError("bytes after the end of the message")


# -- messages ----------


class SyncKind(enum.IntEnum):
    STEP1 = SYNC_STEP1
    STEP2 = SYNC_STEP2
    UPDATE = SYNC_UPDATE


@dataclass(frozen=True, slots=True)
class SyncMessage:
    """A sync message: ``STEP1`` carries a state vector, ``STEP2`` and ``UPDATE`` an update."""

    kind: SyncKind
    payload: bytes


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's awareness: ``state`` is its JSON text (``"null"``: gone)."""

    client_id: int
    clock: int
    state: str

    @property
    def gone(self) -> bool:
        return self.state == "null"


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    entries: tuple[AwarenessEntry, ...]


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


YMessage = SyncMessage | AwarenessMessage | QueryAwareness


def parse_message(raw: bytes, *, max_awareness_bytes: int = 64 * 1024) -> YMessage:
    """One y-protocols message, or :class:`DocMessageError` saying what is wrong with it."""
    reader = _Reader(raw)
    kind = reader.varuint()
    if kind == MSG_SYNC:
        sub = reader.varuint()
        if sub not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
            raise DocMessageError(f"unknown sync message type {sub}")
        payload = reader.varbytes()
        reader.done()
        return SyncMessage(SyncKind(sub), payload)
    if kind == MSG_AWARENESS:
        body = reader.varbytes()
        reader.done()
        if len(body) > max_awareness_bytes:
            raise DocMessageError(f"awareness update over {max_awareness_bytes} bytes")
        return AwarenessMessage(parse_awareness(body))
    if kind == MSG_QUERY_AWARENESS:
        reader.done()
        return QueryAwareness()
    raise DocMessageError(f"unknown message type {kind} (0 sync, 1 awareness, 3 query awareness)")


def parse_awareness(body: bytes) -> tuple[AwarenessEntry, ...]:
    reader = _Reader(body)
    count = reader.varuint()
    entries = []
    for _ in range(count):
        client_id, clock = reader.varuint(), reader.varuint()
        if client_id > MAX_SAFE_INTEGER:
            raise DocMessageError("awareness client id over 2^53-1")
        state = reader.varbytes()
        try:
            text = state.decode()
            json.loads(text)
        except (UnicodeDecodeError, ValueError):
            raise DocMessageError("awareness state is not JSON") from None
        entries.append(AwarenessEntry(client_id, clock, text))
    reader.done()
    return tuple(entries)


def sync_message(kind: SyncKind, payload: bytes) -> bytes:
    out = bytearray()
    write_varuint(out, MSG_SYNC)
    write_varuint(out, kind)
    write_varbytes(out, payload)
    return bytes(out)


def awareness_message(entries: tuple[AwarenessEntry, ...] | list[AwarenessEntry]) -> bytes:
    body = bytearray()
    write_varuint(body, len(entries))
    for entry in entries:
        write_varuint(body, entry.client_id)
        write_varuint(body, entry.clock)
        write_varbytes(body, entry.state.encode())
    out = bytearray()
    write_varuint(out, MSG_AWARENESS)
    write_varbytes(out, bytes(body))
    return bytes(out)


def encode_entry(entry: AwarenessEntry) -> bytes:
    """One entry as kept by the store (its fields as a one-entry awareness body)."""
    out = bytearray()
    write_varuint(out, entry.client_id)
    write_varuint(out, entry.clock)
    write_varbytes(out, entry.state.encode())
    return bytes(out)


def decode_entry(raw: bytes) -> AwarenessEntry:
    reader = _Reader(raw)
    entry = AwarenessEntry(reader.varuint(), reader.varuint(), reader.varbytes().decode())
    reader.done()
    return entry


# -- channels and permissions ----------


def doc_channel_of(data: object) -> str | None:
    """The document channel a ``doc.*`` call names (``{"channel": "doc:<id>"}``), or ``None``."""
    if not isinstance(data, dict):
        return None
    channel = data.get("channel")
    if not isinstance(channel, str):
        return None
    namespace, sep, doc_id = channel.partition(NAMESPACE_BOUNDARY)
    if not sep or namespace not in DOC_NAMESPACES or not _DOC_ID.match(doc_id):
        return None
    return channel


def room_of_notes(channel: str) -> str | None:
    """The room whose notes ``channel`` is (``notes:<room>``), else ``None``."""
    namespace, _, rest = channel.partition(NAMESPACE_BOUNDARY)
    return rest if namespace == NOTES_NAMESPACE else None


class Access(enum.IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


def access(
    rules: ChannelRules, channel: str, user: str, *, room_members: frozenset[str] | None = None
) -> Access:
    """What ``user`` may do with the document ``channel``.

    Read as the namespace lets clients subscribe (``allow_subscribe_for_client``, or
    ``..._for_anonymous`` for an anonymous user); write as it lets them publish
    (``allow_publish_for_client`` / ``..._for_anonymous``). A user-limited document
    (``doc:plan#alice,bob``, when the namespace allows such channels) is for its users only. A
    room's notes (``room_members`` given) are written by the room's members only.
    """
    options: NamespaceOptions | None = rules.options(channel)
    if options is None:
        return Access.NONE
    anonymous = not user
    users = rules.allowed_users(channel) if USER_BOUNDARY in channel else None
    if users is not None and (not options.allow_user_limited_channels or user not in users):
        return Access.NONE
    can_read = users is not None or (
        options.allow_subscribe_for_anonymous if anonymous else options.allow_subscribe_for_client
    )
    if not can_read:
        return Access.NONE
    can_write = options.allow_publish_for_anonymous if anonymous else options.allow_publish_for_client
    if room_members is not None:
        can_write = user in room_members
    return Access.WRITE if can_write else Access.READ


class AwarenessRate:
    """A per-connection, per-document bound on awareness, dropping superseded states (sans I/O).

    Awareness is state, not a stream of events: a client's newer state (a higher clock) replaces its
    older one, and y-protocols clients apply whatever arrives last. So instead of refusing a fast
    client (an error would make a provider resync), each (connection, document) gets a token bucket of
    ``per_second`` with a burst of as many; past it the entries are held, a newer entry of the same
    Yjs client replacing the held one, and released by :meth:`due` (the living core's step, once a
    second) or with the next message the bucket lets through. What others see is each client's
    latest state, at most about ``per_second`` + 1 times a second, never an older one after a newer.
    Time is passed in.
    """

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        """(connection, channel) → its bucket."""
        self._held: dict[tuple[str, str], dict[int, AwarenessEntry]] = {}
        self.superseded = 0
        """Held entries replaced by a newer one of the same client before they went out."""

    def offer(
        self, client: str, channel: str, entries: tuple[AwarenessEntry, ...], now: float
    ) -> tuple[AwarenessEntry, ...]:
        """What to announce now (the held entries not replaced, then ``entries``); ``()`` when held."""
        key = (client, channel)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.per_second, max(1, round(self.per_second)))
        if bucket.take(now) == 0.0:
            held = self._held.pop(key, {})
            fresh = {e.client_id for e in entries}
            return tuple(e for i, e in held.items() if i not in fresh) + entries
        held = self._held.setdefault(key, {})
        for entry in entries:
            old = held.get(entry.client_id)
            if old is None or entry.clock >= old.clock:
                self.superseded += old is not None
                held[entry.client_id] = entry
        return ()

    def due(self, present: Collection[str]) -> list[tuple[str, str, tuple[AwarenessEntry, ...]]]:
        """The held entries of connections still ``present`` (client, channel, entries), released; those
        of connections gone are dropped (their awareness is withdrawn anyway), with their buckets."""
        released = [(c, ch, tuple(held.values())) for (c, ch), held in self._held.items() if c in present]
        self._held.clear()
        for key in [k for k in self._buckets if k[0] not in present]:
            del self._buckets[key]
        return released
