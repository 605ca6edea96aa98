"""The Redis engine: channel state shared by many worker pods through one Redis.

Keys (``P`` is the ``prefix`` given to the constructor, ``C`` a channel name)::

    P.stream.C              Redis Stream of kept publications; entry id = offset ("7-0"), field d = body
    P.meta.C                hash: e = epoch, s = top offset; outlives the stream by the meta TTL
    P.idem.<len(C)>:C:K     result of the publish that used idempotency key K ("offset:epoch"), with TTL
    P.presence.data.C       hash: client id -> encoded ClientInfo
    P.presence.users.C      hash: client id -> user id (for distinct-user stats without decoding)
    P.presence.expire.C     sorted set: client id scored by its expiry time (ms, Redis clock)
    P.bucket.K              hash: t = tokens, ts = last refill (s, Redis clock)
    P.conns.addr.{A}        sorted set: connection ids from client address A scored by expiry (ms, Redis
    P.conns.user.{u:U}      clock) | of user U: cluster-wide connection slots (domain/keys.py)
    P.{u:U}.<kind>          a person's state, one key per kind of domain/keys.USER_KINDS, each with a TTL

On a Redis Cluster (``RedisMode.CLUSTER``) ``C`` in every channel key above, and in its pub/sub
channel, is ``domain.keys.channel_part(C)`` = ``{C}`` (the channel's hash tag), so a channel's stream,
meta, presence and idempotency keys sit on one slot and each script touches one shard; the
idempotency key is ``P.idem.{C}:K``.

Publishing is one Lua script: check the idempotency key, bump the offset, XADD
with an exact MAXLEN, set TTLs, PUBLISH the body with its offset and epoch, and
remember the idempotency key — atomically, so an acknowledged publication is
stored, and offsets are gap-free and in the order subscribers receive them.
With replica durability (``durability="replica"``) the script stores but does not PUBLISH: the
engine sends ``WAIT 1`` in the same pipeline (same connection), and once a replica confirmed the
write, a second script (``_RELEASE``) PUBLISHes every confirmed, unpublished publication of the
channel in offset order (meta field ``p``), so subscribers never see a publication a failover can
take back, and concurrent publishers on several pods still deliver in offset order.
A stream's epoch is created when its meta hash is missing; a Redis restarted
without persistence has lost every meta hash, so streams get new epochs and
recovering clients are honestly told "not recovered". Presence, token buckets
and TTLs run on Redis's clock (``TIME`` inside the scripts), so pods with skewed
clocks still agree.

Pub/sub wire format (one PUBLISH per event, on ``P.ch.C`` for channel ``C`` and
``P.control`` for node-to-node commands)::

    publication   b"p" <offset> b":" <epoch> b":" <header JSON> b"\\n" <data>
    join          b"j" <ClientInfo JSON>
    leave         b"l" <ClientInfo JSON>
    control       the raw payload (on P.control only)

``offset`` is decimal ASCII (0 and an empty epoch when the channel keeps no
history). The header is a JSON object with the optional keys ``t`` (time_ms),
``u``/``c`` (user/client), ``ci``/``hi`` (conn_info/chan_info as JSON text) and
``g`` (tags). JSON escapes newlines, so the first ``\\n`` ends the header and the
publication's data follows raw, never re-encoded. Stream entries hold the same
``<header JSON>\\n<data>`` body. ClientInfo JSON uses the same ``u``/``c``/``ci``/``hi`` keys.

On a Redis Cluster the scripts and the join/leave/control messages use ``SPUBLISH`` (sharded pub/sub,
Redis 7) on the same names, and each node holds one pub/sub connection per primary
(``engines.shards``), SSUBSCRIBE-ing each channel on the primary of its slot; each shard's connection
breaks and reconnects alone (its channels wait; the others keep fanning out), and ``ping`` fails only
when no shard is reachable. Otherwise each node holds one pub/sub connection: SUBSCRIBE
when the first local client subscribes to a channel, UNSUBSCRIBE when the last leaves. If that
connection breaks (a Redis restart), the node reconnects with jittered exponential backoff
and resubscribes to every channel it still needs; ``ping`` fails meanwhile so the
pod reports not-ready (the delays: ``domain.backoff``). Events are delivered to the handler
from that reader task.

Where Redis is comes from a :class:`~resonance_worker.redis_client.RedisConnector` (one server,
the primary a set of Sentinels names, or a Redis Cluster). Across a failover, idempotent calls
(history, presence, joins, tokens) are retried with jittered backoff for up to
``failover_retry_seconds``; a publish only when it carries an idempotency key (the script answers a
retry of a stored publication as a duplicate), so a publication is never stored twice.

Why one module of about 800 lines: the Lua scripts, the key layout above and the pub/sub wire
format are one contract that every pod must agree on; the engine's methods are thin callers of
the scripts, and keeping them beside the scripts is what lets a reader check one against the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA as HIREDIS_NOT_ENOUGH_DATA
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from resonance_worker.domain import keys
from resonance_worker.domain.backoff import Backoff
from resonance_worker.domain.circuit import CircuitBreaker, CircuitState
from resonance_worker.domain.datarights import publication_concerns
from resonance_worker.domain.keys import (
    USER_KINDS,
    SlotScope,
    UserKind,
    channel_of_part,
    channel_part,
    user_key,
)
from resonance_worker.domain.looplag import DeadlineExcuse
from resonance_worker.engines.base import (
    ClientInfo,
    EngineEventHandler,
    HistoryOptions,
    PersonalData,
    Publication,
    PublishResult,
    StreamPosition,
)
from resonance_worker.engines.docs import Fanout
from resonance_worker.engines.loopwatch import LoopWatch
from resonance_worker.engines.memory import (
    DEFAULT_META_TTL_SECONDS,
    new_epoch,
    validate_bucket,
    validate_history,
)
from resonance_worker.engines.shards import ShardDownError, ShardedPubSub
from resonance_worker.errors import (
    EngineCircuitOpenError,
    EngineError,
    EngineOutOfMemoryError,
    EngineTimeoutError,
)
from resonance_worker.redis_client import RedisConnector
from resonance_worker.settings import Durability, RedisMode

log = logging.getLogger("resonance.worker.engine")
T = TypeVar("T")

HARD_DEADLINE_FACTOR = 4.0
"""A call's deadline moves on by the time this worker's event loop ran late while it waited (its answer
may be sitting unread), up to this many times the timeout in all (``engines/loopwatch.py``)."""


_DROP_EXPIRED_PRESENCE = """
local function now_ms()
  local t = redis.call("time")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop_expired(data_key, users_key, expire_key, now)
  local expired = redis.call("zrangebyscore", expire_key, "-inf", now)
  for i = 1, #expired, 1000 do
    local chunk = {unpack(expired, i, math.min(i + 999, #expired))}
    redis.call("hdel", data_key, unpack(chunk))
    redis.call("hdel", users_key, unpack(chunk))
  end
  if #expired > 0 then
    redis.call("zremrangebyscore", expire_key, "-inf", now)
  end
end
"""

# KEYS: stream, meta, idempotency. ARGV: body, size, ttl_ms, meta_ttl_ms, new epoch,
# idempotency ttl_ms (0: no key), pub/sub channel, "1" to PUBLISH now or "0" to leave it to _RELEASE,
# the publish command ("publish", or "spublish" on a Redis Cluster: the channel is on the keys' slot).
_PUBLISH = """
local idempotency_ttl = tonumber(ARGV[6])
if idempotency_ttl > 0 then
  local previous = redis.call("get", KEYS[3])
  if previous then
    -- A write, so that a WAIT after this call also covers the original publication.
    redis.call("pexpire", KEYS[3], idempotency_ttl)
    return {1, previous}
  end
end
local result = "0:"
local size = tonumber(ARGV[2])
local now = ARGV[8] == "1" or size == 0
if size > 0 then
  local epoch = redis.call("hget", KEYS[2], "e")
  if not epoch then
    epoch = ARGV[5]
    redis.call("del", KEYS[1])
    redis.call("hset", KEYS[2], "e", epoch)
  end
  local offset = redis.call("hincrby", KEYS[2], "s", 1)
  redis.call("xadd", KEYS[1], "MAXLEN", size, offset, "d", ARGV[1])
  redis.call("pexpire", KEYS[1], ARGV[3])
  if redis.call("pttl", KEYS[2]) < tonumber(ARGV[4]) then
    redis.call("pexpire", KEYS[2], ARGV[4])
  end
  if now then
    redis.call("hset", KEYS[2], "p", offset)
  end
  result = offset .. ":" .. epoch
end
if now then
  redis.call(ARGV[9], ARGV[7], "p" .. result .. ":" .. ARGV[1])
end
if idempotency_ttl > 0 then
  redis.call("set", KEYS[3], result, "px", idempotency_ttl)
end
return {0, result}
"""

# KEYS: stream, meta. ARGV: offset confirmed by a replica, pub/sub channel, publish command.
# Replica durability: PUBLISH, in offset order, every kept publication up to the confirmed one not
# published yet (meta field p = published up to). A replica that has offset n has every earlier
# write too (one replication stream), so whoever releases first releases them all, in order, once.
_RELEASE = """
local upto = tonumber(ARGV[1])
local epoch = redis.call("hget", KEYS[2], "e")
if not epoch then
  return 0
end
local done = tonumber(redis.call("hget", KEYS[2], "p") or (upto - 1))
if done >= upto then
  return 0
end
local entries = redis.call("xrange", KEYS[1], done + 1, upto)
for _, entry in ipairs(entries) do
  local offset = string.match(entry[1], "^(%d+)")
  redis.call(ARGV[3], ARGV[2], "p" .. offset .. ":" .. epoch .. ":" .. entry[2][2])
end
redis.call("hset", KEYS[2], "p", upto)
return #entries
"""

# The stream's state (its top, and its epoch, made when absent) and, asked for, its publications in a
# range. ARGV from ``first`` + 1: new epoch, meta_ttl_ms, refresh meta ttl (0/1), "=" .. since epoch
# or "", range command ("" for none), start, end, count (0: all).
_STREAM_STATE_FUNCTION = """
local function stream_state(stream_key, meta_key, argv, first)
  local function a(i) return argv[first + i] end
  local epoch = redis.call("hget", meta_key, "e")
  local meta_ttl = tonumber(a(2))
  if not epoch then
    epoch = a(1)
    redis.call("del", stream_key)
    redis.call("hset", meta_key, "e", epoch)
    redis.call("pexpire", meta_key, meta_ttl)
  elseif a(3) == "1" and redis.call("pttl", meta_key) < meta_ttl then
    redis.call("pexpire", meta_key, meta_ttl)
  end
  local top = redis.call("hget", meta_key, "s") or "0"
  if a(5) == "" or (a(4) ~= "" and a(4) ~= "=" .. epoch) then
    return {top, epoch, {}}
  end
  local entries
  if a(8) ~= "0" then
    entries = redis.call(a(5), stream_key, a(6), a(7), "COUNT", a(8))
  else
    entries = redis.call(a(5), stream_key, a(6), a(7))
  end
  return {top, epoch, entries}
end
"""

# KEYS: stream, meta. ARGV: as stream_state's.
_HISTORY = (
    _STREAM_STATE_FUNCTION
    + """
return stream_state(KEYS[1], KEYS[2], ARGV, 0)
"""
)

# One client in a channel's presence (or refreshed there) for ttl_ms.
_ADD_PRESENCE_FUNCTION = (
    _DROP_EXPIRED_PRESENCE
    + """
local function add_presence(data_key, users_key, expire_key, client, info, user, ttl_ms)
  local now = now_ms()
  drop_expired(data_key, users_key, expire_key, now)
  local ttl = tonumber(ttl_ms)
  redis.call("hset", data_key, client, info)
  redis.call("hset", users_key, client, user)
  redis.call("zadd", expire_key, now + ttl, client)
  for _, key in ipairs({data_key, users_key, expire_key}) do
    if redis.call("pttl", key) < ttl then
      redis.call("pexpire", key, ttl)
    end
  end
end
"""
)

# KEYS: data, users, expire. ARGV: client, encoded info, user, ttl_ms.
_ADD_PRESENCE = (
    _ADD_PRESENCE_FUNCTION
    + """
add_presence(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""
)

# A subscribe's engine work as one script (one command to pack, one reply, one script run in Redis
# instead of two): the client in the channel's presence, then the stream's state as _HISTORY gives it.
# KEYS: stream, meta, presence data, users, expire. ARGV: stream_state's eight, then client, encoded
# info, user, ttl_ms.
_HISTORY_WITH_PRESENCE = (
    _ADD_PRESENCE_FUNCTION
    + _STREAM_STATE_FUNCTION
    + """
add_presence(KEYS[3], KEYS[4], KEYS[5], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
return stream_state(KEYS[1], KEYS[2], ARGV, 0)
"""
)

# KEYS: data, users, expire.
_PRESENCE = (
    _DROP_EXPIRED_PRESENCE
    + """
drop_expired(KEYS[1], KEYS[2], KEYS[3], now_ms())
return redis.call("hgetall", KEYS[1])
"""
)

# KEYS: data, users, expire. ARGV: client id [, pub/sub channel, leave message, publish command]. One
# client's entry gone, atomically; with the last three, its leave published too (one script for both).
_REMOVE_PRESENCE = """
redis.call("hdel", KEYS[1], ARGV[1])
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("zrem", KEYS[3], ARGV[1])
if ARGV[2] then
  redis.call(ARGV[4], ARGV[2], ARGV[3])
end
return 1
"""

# KEYS: data, users, expire.
_PRESENCE_STATS = (
    _DROP_EXPIRED_PRESENCE
    + """
drop_expired(KEYS[1], KEYS[2], KEYS[3], now_ms())
local users = redis.call("hvals", KEYS[2])
local distinct, count = {}, 0
for _, user in ipairs(users) do
  if not distinct[user] then
    distinct[user] = true
    count = count + 1
  end
end
return {#users, count}
"""
)

# KEYS: bucket. ARGV: rate per second, burst. Returns the wait in seconds, as text (Lua numbers
# would be truncated to integers on the way out).
_TAKE_TOKEN = """
local t = redis.call("time")
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call("hmget", KEYS[1], "t", "ts")
local tokens, updated = tonumber(state[1]), tonumber(state[2])
if tokens == nil or updated == nil then
  tokens, updated = burst, now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call("hset", KEYS[1], "t", string.format("%.17g", tokens), "ts", string.format("%.17g", now))
redis.call("pexpire", KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return string.format("%.17g", wait)
"""

# KEYS: the slot set. ARGV: holder, limit, ttl ms. Returns 1 when the holder holds a slot, else 0.
_TAKE_SLOT = """
local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("zremrangebyscore", KEYS[1], "-inf", now)
if redis.call("zscore", KEYS[1], ARGV[1]) == false and redis.call("zcard", KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call("zadd", KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call("pexpire", KEYS[1], tonumber(ARGV[3]))
return 1
"""

SLOT_REFRESH_CHUNK = 200
"""Connection slots refreshed per pipelined round trip."""

# KEYS: the slot set. ARGV: ttl ms, holder. Keeps the holder for another ttl.
_REFRESH_SLOT = """
local t = redis.call("time")
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
redis.call("zadd", KEYS[1], expiry, ARGV[2])
redis.call("pexpire", KEYS[1], tonumber(ARGV[1]))
return 1
"""


# -- wire format --------------------------------------------------------------------


def encode_info(info: ClientInfo) -> bytes:
    fields: dict[str, str] = {"u": info.user, "c": info.client}
    if info.conn_info is not None:
        fields["ci"] = info.conn_info.decode()
    if info.chan_info is not None:
        fields["hi"] = info.chan_info.decode()
    return orjson.dumps(fields)


def _info_from(fields: dict[str, Any]) -> ClientInfo:
    conn_info = fields.get("ci")
    chan_info = fields.get("hi")
    return ClientInfo(
        user=fields["u"],
        client=fields["c"],
        conn_info=conn_info.encode() if conn_info is not None else None,
        chan_info=chan_info.encode() if chan_info is not None else None,
    )


def decode_info(raw: bytes) -> ClientInfo:
    return _info_from(orjson.loads(raw))


def encode_body(data: bytes, info: ClientInfo | None, tags: dict[str, str] | None, time_ms: int) -> bytes:
    """A publication without its offset: ``<header JSON>\\n<data>``."""
    header: dict[str, Any] = {"t": time_ms}
    if info is not None:
        header["u"] = info.user
        header["c"] = info.client
        if info.conn_info is not None:
            header["ci"] = info.conn_info.decode()
        if info.chan_info is not None:
            header["hi"] = info.chan_info.decode()
    if tags:
        header["g"] = tags
    return orjson.dumps(header) + b"\n" + data


def decode_body(body: bytes, offset: int) -> Publication:
    newline = body.index(b"\n")
    header = orjson.loads(body[:newline])
    return Publication(
        data=body[newline + 1 :],
        offset=offset,
        info=_info_from(header) if "u" in header else None,
        tags=header.get("g", {}),
        time_ms=header.get("t", 0),
    )


def decode_publication(message: bytes) -> tuple[Publication, StreamPosition]:
    """The publication in a pub/sub message ``p<offset>:<epoch>:<body>``."""
    offset_end = message.index(b":", 1)
    epoch_end = message.index(b":", offset_end + 1)
    offset = int(message[1:offset_end])
    epoch = message[offset_end + 1 : epoch_end].decode()
    return decode_body(message[epoch_end + 1 :], offset), StreamPosition(offset, epoch)


def _as_bytes(value: bytes | str | int) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- the engine -----------------------------------------------------------------------


class _AutoPipeline:
    """Commands issued during one event-loop iteration go to Redis as one pipeline
    (one pool checkout, one write, one read), as Centrifugo's client pipelines: a burst
    of connects or publishes costs a few round trips instead of one per command. Each
    caller gets its own reply or error; not a transaction.

    At most ``max_in_flight`` pipelines are out at once; what is issued meanwhile waits
    for the next one, so under load the batches grow (fewer writes and reads per command)
    while an idle worker still sends a lone command in the iteration it was issued.

    On a Redis Cluster (``node_of``: the node a command goes to) a batch is split by node into
    pipelines of their own: redis-py's cluster pipeline fails every command of a batch when one
    node's connection breaks, and a failover of one shard must not fail (or, worse, report as failed
    what was stored) the commands of the others."""

    def __init__(
        self,
        client: aioredis.Redis,
        max_in_flight: int = 2,
        node_of: Callable[[tuple[Any, ...]], str] | None = None,
    ) -> None:
        self._client = client
        self._node_of = node_of
        self._queued: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._max_in_flight = max_in_flight
        self._scheduled = False

    def call(self, *command: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        # A caller that gave up (its deadline) never reads the error: mark it read.
        future.add_done_callback(_retrieve)
        self._queued.append((command, future))
        self._schedule(loop)
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled and self._queued and len(self._running) < self._max_in_flight:
            self._scheduled = True
            loop.call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        batch, self._queued = self._queued, []
        if not batch:
            return
        task = asyncio.ensure_future(self._execute(batch))
        self._running.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._queued:
            self._schedule(task.get_loop())

    async def _execute(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        node_of = self._node_of
        if node_of is None:
            await self._execute_one(batch)
            return
        by_node: dict[str, list[tuple[tuple[Any, ...], asyncio.Future[Any]]]] = {}
        for item in batch:
            by_node.setdefault(node_of(item[0]), []).append(item)
        if len(by_node) == 1:
            await self._execute_one(batch)
        else:
            await asyncio.gather(*(self._execute_one(part) for part in by_node.values()))

    async def _execute_one(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            if self._node_of is None:
                replies = await self._exchange_on_pooled([command for command, _ in batch])
            else:
                async with self._client.pipeline(transaction=False) as pipe:
                    for command, _ in batch:
                        pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _exchange_on_pooled(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One Redis (or Sentinel's primary): the batch written at once and its replies read on one
        pooled connection, retried on a fresh connection as redis-py's pipeline retries it (the client's
        ``retry``), each reply through the client's response callback, an error reply returned in its
        place - what ``pipeline().execute(raise_on_error=False)`` does, without building a pipeline per
        batch (its pool wait, bookkeeping and observability hooks: a quarter of a call's CPU here)."""
        pool = self._client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        try:
            replies: list[Any] = await connection.retry.call_with_retry(
                lambda: self._exchange(connection, commands), lambda _error: connection.disconnect()
            )
        finally:
            await pool.release(connection)
        return replies

    async def _exchange(self, connection: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        await connection.send_packed_command(connection.pack_commands(commands))
        callbacks = self._client.response_callbacks
        replies: list[Any] = []
        for command in commands:
            try:
                reply = await connection.read_response()
            except ResponseError as exc:
                replies.append(exc)
                continue
            callback = callbacks.get(command[0])
            if callback is not None:
                reply = callback(reply)
                if inspect.isawaitable(reply):
                    reply = await reply
            replies.append(reply)
        return replies

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        for _, future in self._queued:
            future.cancel()
        self._queued = []


def _out_of_memory(exc: BaseException) -> bool:
    """Redis's ``OOM command not allowed when used memory > 'maxmemory'`` (redis-py strips the ``OOM``
    code into the class; from inside a script it may arrive as a plain error with the same text)."""
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, RedisError) and "command not allowed when used memory" in str(exc)
    )


def _retryable(exc: EngineError) -> bool:
    """A failure a failover explains: a broken or refused connection (no primary known yet), READONLY
    from a demoted primary, a timeout, an open circuit."""
    if isinstance(exc, EngineCircuitOpenError | EngineTimeoutError):
        return True
    return isinstance(exc.__cause__, RedisConnectionError | ReadOnlyError | OSError)


_MESSAGE_KINDS = (b"message", b"smessage")
_NOTHING_PARSED: Any = object()


def _parsed_reply(connection: Any) -> Any:
    """The next reply hiredis already parsed from what ``connection`` read (``_NOTHING_PARSED`` when
    none is complete, or when redis-py parses in Python: then ``read_response`` does it all). An error
    reply, or a broken connection's, is raised as ``read_response`` would."""
    reader = getattr(getattr(connection, "_parser", None), "_reader", None)
    has_data = getattr(reader, "has_data", None)
    if has_data is None or not has_data():
        return _NOTHING_PARSED
    assert reader is not None
    reply = reader.gets()
    if reply is HIREDIS_NOT_ENOUGH_DATA or reply is False:
        return _NOTHING_PARSED
    if isinstance(reply, Exception):
        raise reply
    if isinstance(reply, list) and reply and isinstance(reply[0], Exception):
        raise reply[0]
    return reply


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class RedisEngine:
    """Channel state in one Redis, shared by every pod that uses the same ``prefix``."""

    name = "redis"

    def __init__(
        self,
        url: str | RedisConnector,
        *,
        prefix: str = "resonance",
        timeout: float = 2.0,
        default_meta_ttl_seconds: float = DEFAULT_META_TTL_SECONDS,
        pubsub_ping_interval: float = 5.0,
        reconnect_min_delay: float = 0.05,
        reconnect_max_delay: float = 5.0,
        wall_clock: Callable[[], float] = time.time,
        max_connections: int = 256,
        circuit_failures: int = 0,
        circuit_reset_seconds: float = 2.0,
        durability: Durability = Durability.NONE,
        replica_wait_ms: int = 500,
        failover_retry_seconds: float = 0.0,
    ) -> None:
        self.connector = url if isinstance(url, RedisConnector) else RedisConnector(url)
        self.cluster = self.connector.mode is RedisMode.CLUSTER
        """Redis Cluster mode: hash-tagged channel keys, sharded pub/sub (module docstring)."""
        self._publish_command = "spublish" if self.cluster else "publish"
        self._shards: ShardedPubSub | None = None
        self.durability = durability
        self._replica_wait_ms = replica_wait_ms
        self._failover_retry_s = failover_retry_seconds
        self._retry_delays = Backoff(first_s=0.05, cap_s=1.0)
        self.retried = 0
        """Calls retried after a broken connection or a failover, since start."""
        self.unconfirmed = 0
        """Publications refused because no replica confirmed them in time (replica durability)."""
        # Fail fast after repeated failures instead of each call waiting out its timeout.
        self._circuit_params = (circuit_failures, circuit_reset_seconds)
        self._breaker = self._new_breaker()
        self.short_circuited = 0
        self.out_of_memory = 0
        """Writes Redis refused at ``maxmemory`` (``noeviction``): ``resonance_redis_oom_total``."""
        self.loop_watch = LoopWatch()
        self.deadlines_excused = 0
        """Calls whose deadline came while this worker's event loop ran late, and that were given that lag
        to finish (``resonance_redis_deadlines_excused_total``): a starved worker, not a failing Redis."""
        self.starved_timeouts = 0
        """Calls that still timed out, with the loop late for half their deadline or more: failed, but not
        counted against Redis by the circuit breaker."""
        self._max_connections = max_connections
        self.prefix = prefix
        self._timeout = timeout
        self._default_meta_ttl = default_meta_ttl_seconds
        self._pubsub_ping_interval = pubsub_ping_interval
        self._reconnect = Backoff(first_s=reconnect_min_delay, cap_s=reconnect_max_delay)
        self._wall_clock = wall_clock
        self._client: aioredis.Redis | None = None
        self._auto_pipeline: _AutoPipeline | None = None
        self._pubsub_client: aioredis.Redis | None = None
        self._handler: EngineEventHandler | None = None
        self._control_channel = f"{prefix}.control".encode()
        self._channel_prefix = f"{prefix}.ch.".encode()
        self._wanted: set[bytes] = set()  # pub/sub channels this node needs
        self._confirmations: dict[bytes, list[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.reconnects = 0  # pub/sub reconnections after the first connect, for metrics and tests
        self.primary: tuple[str, int] | None = None
        """The Redis node this node's pub/sub connection last reached (the primary, in Sentinel mode)."""
        self.failovers = 0
        """Primary changes this node saw (``resonance_redis_failovers_total``): in Sentinel mode the
        pub/sub connection came back to another node than before; on a Cluster, sharded pub/sub was
        whole again with another set of primaries (a shard failed over; a slot moving between the
        same primaries is no failover)."""
        self.last_failover: float | None = None
        """``time.monotonic()`` of the last failover seen (None: none yet)."""
        self._primaries: frozenset[str] | None = None  # a Cluster's primaries at the last generation

    def _new_breaker(self) -> CircuitBreaker | None:
        failures, reset = self._circuit_params
        return CircuitBreaker(failure_threshold=failures, reset_timeout_s=reset) if failures else None

    @property
    def pubsub_connected(self) -> bool:
        """Whether this node's pub/sub connection is up (fan-out reaches it)."""
        return self._connected.is_set()

    @property
    def _pipeline(self) -> _AutoPipeline:
        if self._auto_pipeline is None:
            raise EngineError("redis engine used before start()")
        return self._auto_pipeline

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise EngineError("redis engine used before start()")
        return self._client

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, handler: EngineEventHandler | None = None) -> None:
        """Connect, waiting up to ``timeout`` for the pub/sub connection, which is kept (and
        re-established) in the background from then on."""
        self._handler = handler
        self.loop_watch.start()
        # One quick retry: a pooled connection can be stale after a Redis restart.
        # A blocking pool: under a burst of connects, commands wait (up to ``timeout``) for a pooled
        # connection instead of failing with "Too many connections" as the default pool does.
        # With failover retries on, redis-py retries nothing itself (a resent publish could be stored
        # twice); the engine retries what is safe to retry (``_call``).
        # redis-py's own timers (waiting for a pooled connection, reading a reply) would fire in wall time
        # too, and drop the connection: they are set to the hard end; each call's deadline is ``_guard``'s.
        self._client = self.connector.client(
            timeout=self._timeout * HARD_DEADLINE_FACTOR,
            socket_timeout=self._timeout * HARD_DEADLINE_FACTOR,
            retries=0 if self._failover_retry_s else 1,
            max_connections=self._max_connections,
        )
        # No hidden retries on the pub/sub connection: the reader loop owns reconnection.
        if self.cluster:  # sharded pub/sub: an independent connection to each primary (engines.shards)
            self._shards = ShardedPubSub(
                self._client,
                self.connector,
                prefix=self.prefix,
                timeout=self._timeout,
                read=self._read,
                wanted=lambda: [self._control_channel, *self._wanted],
                on_lost=self._shard_lost,
                on_whole=self._shards_whole,
                backoff=self._reconnect,
            )
            self._connected = self._shards.connected
        else:
            self._pubsub_client = self.connector.client(timeout=self._timeout, socket_timeout=self._timeout)
        client = self._client
        self._publish_script = client.register_script(_PUBLISH)
        self._history_script = client.register_script(_HISTORY)
        self._add_presence_script = client.register_script(_ADD_PRESENCE)
        self._history_with_presence_script = client.register_script(_HISTORY_WITH_PRESENCE)
        self._remove_presence_script = client.register_script(_REMOVE_PRESENCE)
        self._presence_script = client.register_script(_PRESENCE)
        self._presence_stats_script = client.register_script(_PRESENCE_STATS)
        self._take_token_script = client.register_script(_TAKE_TOKEN)
        self._take_slot_script = client.register_script(_TAKE_SLOT)
        self._refresh_slot_script = client.register_script(_REFRESH_SLOT)
        self._release_script = client.register_script(_RELEASE)
        self._auto_pipeline = _AutoPipeline(client, node_of=self._node_of if self.cluster else None)
        pubsub_forever = self._shards.run() if self._shards is not None else self._pubsub_forever()
        self._reader = asyncio.create_task(pubsub_forever, name="redis-engine-pubsub")
        # Serve ready when Redis is: wait (briefly) for the pub/sub connection. A Redis that is down
        # at start-up is not fatal: the pod stays not-ready until the reader connects.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout):
                await self._connected.wait()

    async def close(self) -> None:
        self.loop_watch.stop()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        pipeline, self._auto_pipeline = self._auto_pipeline, None
        if pipeline is not None:
            await pipeline.close()
        for attribute in ("_client", "_pubsub_client"):
            client = getattr(self, attribute)
            setattr(self, attribute, None)
            if client is not None:
                await client.aclose()

    async def ping(self) -> None:
        """Redis answers and fan-out reaches this node. On a Cluster: some primary answers and at least
        one shard's pub/sub connection is up - a shard without a primary does not make the node
        unready (docs/reliability.md, "Redis Cluster"; :attr:`shards_down` says which)."""
        async with self._guard("ping"):
            if self.cluster:
                await self._ping_any_primary()
            else:
                await self.client.ping()
        if not self._connected.is_set():
            raise EngineError("redis pub/sub connection is down (reconnecting)")

    async def _ping_any_primary(self) -> None:
        cluster: Any = self.client
        # Straight to each node (``ClusterNode.execute_command``): the cluster client's own path may first
        # refresh its slot map through whichever node it picks - a hung one included.
        pings = [asyncio.ensure_future(node.execute_command("PING")) for node in cluster.get_primaries()]
        errors: list[BaseException] = []
        try:
            for answered in asyncio.as_completed(pings):
                try:
                    await answered
                    return
                except (RedisError, OSError) as exc:
                    errors.append(exc)
        finally:
            for ping in pings:
                ping.cancel()
            await asyncio.gather(*pings, return_exceptions=True)
        raise errors[0] if errors else RedisClusterException("the Redis Cluster slot map has no primary")

    @property
    def shards_down(self) -> list[str]:
        """On a Cluster, the primaries (``host:port``) this node's pub/sub cannot reach now: their
        channels wait (and are recovered from history) until they, or their promoted replicas, are back."""
        return sorted(self._shards.down) if self._shards is not None else []

    @contextlib.asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """A deadline for one call, redis errors turned into the worker's own, and the
        circuit breaker: refused at once while open. The readiness ``ping`` is never
        refused, and its success closes the circuit (Redis is back)."""
        breaker = self._breaker
        probe = what == "ping"
        if breaker is not None and not probe and not breaker.allow(time.monotonic()):
            self.short_circuited += 1
            wait = breaker.retry_after(time.monotonic())
            raise EngineCircuitOpenError(f"redis circuit open; next trial in {wait:.1f} s")
        succeeded = False
        counted = True
        loop = asyncio.get_running_loop()
        excuse: DeadlineExcuse | None = None
        try:
            async with self.loop_watch.deadline(
                self._timeout, self._timeout * HARD_DEADLINE_FACTOR
            ) as excuse:
                yield
            succeeded = True
        except ShardDownError:
            counted = False  # known already (one shard reconnecting): no news about Redis
            raise
        except (TimeoutError, RedisTimeoutError) as exc:
            late = ""
            if excuse is not None and excuse.starved(loop.time()):
                # This worker's loop, not Redis, is what ran late: fail the call, but the circuit
                # (which refuses every call) is for a failing Redis.
                counted = False
                self.starved_timeouts += 1
                late = " (this worker's event loop was running late: it is short of CPU)"
            raise EngineTimeoutError(f"redis {what} timed out after {self._timeout:g} s{late}") from exc
        except (RedisError, OSError) as exc:
            if _out_of_memory(exc):
                # A full Redis is up: the call failed, the circuit is not the answer (reads still work).
                succeeded = True
                self.out_of_memory += 1
                log.warning("redis is full (maxmemory, noeviction): %s refused", what)
                raise EngineOutOfMemoryError(f"redis {what} refused: Redis is full ({exc})") from exc
            raise EngineError(f"redis {what} failed: {exc}") from exc
        finally:
            if excuse is not None and excuse.excused:
                self.deadlines_excused += 1
            if breaker is not None and counted:
                self._record(breaker, succeeded, probe)

    async def _call(self, what: str, call: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """``call`` under :meth:`_guard`; when it fails on a broken connection, a timeout or an open
        circuit (a failover under way) and ``retry``, again after a jittered delay, for up to
        ``failover_retry_seconds`` in all (0: never)."""
        deadline = time.monotonic() + self._failover_retry_s
        attempt = 0
        while True:
            try:
                async with self._guard(what):
                    return await call()
            except EngineError as exc:
                if not (retry and self._failover_retry_s and _retryable(exc)):
                    raise
                delay = self._retry_delays.delay(attempt, random.uniform)
                if time.monotonic() + delay > deadline:
                    raise
                log.info("redis %s retried (%s)", what, exc)
            self.retried += 1
            attempt += 1
            await asyncio.sleep(delay)

    def _record(self, breaker: CircuitBreaker, succeeded: bool, probe: bool) -> None:
        now = time.monotonic()
        if succeeded and probe:
            if breaker.state(now) is not CircuitState.CLOSED:
                self._breaker = self._new_breaker()
        elif succeeded:
            breaker.record_success(now)
        else:
            # Any failure counts - a cancelled trial too, so a half-open circuit never waits forever.
            was_open = breaker.state(now) is CircuitState.OPEN
            breaker.record_failure(now)
            if not was_open and breaker.state(now) is CircuitState.OPEN:
                log.warning("redis circuit opened", extra={"retry_after_s": breaker.retry_after(now)})

    async def _script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA through the pipeline; a Redis that lost its scripts (restarted) gets
        them loaded again, through the pipeline too (after a restart every caller of the
        moment gets NOSCRIPT at once: their loads go out together, not one connection each)."""
        try:
            return await self._pipeline.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            if self.cluster:
                # A keyless SCRIPT LOAD has no slot to be routed by: EVAL loads it on the keys' node.
                return await self._pipeline.call("EVAL", script.script, len(keys), *keys, *args)
            await self._pipeline.call("SCRIPT", "LOAD", script.script)
            return await self._pipeline.call("EVALSHA", script.sha, len(keys), *keys, *args)

    def _key(self, kind: str, channel: str) -> str:
        return f"{self.prefix}.{kind}.{self._channel_part(channel)}"

    def _node_of(self, command: tuple[Any, ...]) -> str:
        """The Cluster node a pipelined command goes to (by its first key: a script's, or the
        command's first argument); "" when the slot map does not say (redis-py then routes it)."""
        name = str(command[0]).upper()
        key = command[3] if name in ("EVALSHA", "EVAL") and int(command[2]) > 0 else command[1]
        try:
            cluster: Any = self.client  # a RedisCluster
            node = cluster.nodes_manager.get_node_from_slot(key_slot(_as_bytes(key)))
        except (RedisError, RedisClusterException, IndexError, ValueError):
            return ""
        return str(node.name)

    def _channel_part(self, channel: str) -> str:
        """A channel's name in its keys: hash-tagged on a Cluster (``domain.keys.channel_part``)."""
        return channel_part(channel) if self.cluster else channel

    def _channel_of(self, part: str) -> str:
        return channel_of_part(part) if self.cluster else part

    # -- pub/sub connection ---------------------------------------------------------------

    async def _pubsub_forever(self) -> None:
        attempt = 0
        first = True
        while True:
            pubsub: PubSub | None = None
            try:
                async with asyncio.timeout(self._timeout):
                    assert self._pubsub_client is not None
                    pubsub = self._pubsub_client.pubsub()
                    await self._subscribe_all(pubsub)
                if not first:
                    self.reconnects += 1
                    log.info("redis pub/sub reconnected", extra={"channels": len(self._wanted)})
                self._note_primary(pubsub)
                self._pubsub = pubsub
                self._connected.set()
                if not first:
                    self._fanout_resumed()
                first = False
                attempt = 0
                await self._read(pubsub)
            except (RedisError, OSError, TimeoutError, EngineError) as exc:
                log.warning("redis pub/sub connection lost (%s: %s)", type(exc).__name__, exc)
            except Exception:
                # Whatever redis-py throws, fan-out for this node must come back: reconnect anyway.
                log.exception("redis pub/sub reader failed unexpectedly; reconnecting")
            finally:
                self._connected.clear()
                self._pubsub = None
                self._fail_confirmations(EngineError("redis pub/sub connection lost"))
                if pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            await asyncio.sleep(self._reconnect.delay(attempt, random.uniform))
            attempt += 1

    def _shard_lost(self, channels: set[bytes]) -> None:
        """A Cluster shard's connection broke (or a channel moved): its subscribes in flight fail."""
        self._fail_confirmations(EngineError("redis cluster shard connection lost"), channels)

    def _shards_whole(self, after_loss: bool) -> None:
        """Every primary connected and every channel placed (again, ``after_loss``: look for gaps)."""
        assert self._shards is not None
        self._note_primaries(self._shards.primaries)
        if after_loss:
            self.reconnects += 1
            self._fanout_resumed()

    def _fanout_resumed(self) -> None:
        """Tell the handler that publications may have been missed while the connection was down
        (the node checks its positioned subscriptions at once instead of at its next round)."""
        handler = self._handler
        if handler is None:
            return
        try:
            handler.on_fanout_resumed()
        except Exception:
            log.exception("redis engine: fan-out resumption not handled")

    def _note_primary(self, pubsub: PubSub) -> None:
        connection: Any = pubsub.connection
        if connection is None:
            return
        address = (str(getattr(connection, "host", "")), int(getattr(connection, "port", 0) or 0))
        if self.primary is not None and address != self.primary:
            self._failed_over()
            log.warning("redis primary changed", extra={"from": list(self.primary), "to": list(address)})
        self.primary = address

    def _note_primaries(self, primaries: frozenset[str]) -> None:
        """A Cluster's primaries, as sharded pub/sub found them once whole."""
        if self._primaries is not None and primaries != self._primaries:
            self._failed_over()
            log.warning(
                "redis cluster primaries changed",
                extra={
                    "gone": sorted(self._primaries - primaries),
                    "new": sorted(primaries - self._primaries),
                },
            )
        self._primaries = primaries

    def _failed_over(self) -> None:
        self.failovers += 1
        self.last_failover = time.monotonic()

    async def _subscribe_all(self, pubsub: PubSub) -> None:
        await pubsub.subscribe(self._control_channel)
        wanted = list(self._wanted)
        for start in range(0, len(wanted), 512):
            await pubsub.subscribe(*wanted[start : start + 512])

    async def _read(self, pubsub: PubSub, moved: Callable[[bytes], None] | None = None) -> None:
        """Read one connection until it fails or goes silent; a wanted channel a Cluster node drops (its
        slot moved) goes to ``moved``, or fails the connection when there is none.

        The hot path reads raw replies off the connection: a publication (``message``/``smessage``) goes
        straight to ``_dispatch`` with its channel and payload as bytes; every other reply (subscribe
        confirmations, pongs, unsubscribes) goes through redis-py's ``handle_message``, which keeps its
        subscription book. Replies already parsed from the socket (hiredis reads many per ``recv``) are
        taken without a coroutine, a timeout and redis-py's per-message dict each: the cross-node profile
        spent as much in redis-py's ``get_message`` as in the fan-out it fed."""
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        connection: Any = pubsub.connection
        if connection is None:
            raise EngineError("redis pub/sub connection is not open")
        while True:
            response = _parsed_reply(connection)
            if response is _NOTHING_PARSED:
                response = await connection.read_response(
                    timeout=self._pubsub_ping_interval, disconnect_on_error=False, push_request=True
                )
            now = loop.time()
            if response is None:
                if now - last_heard > self._pubsub_ping_interval + self._timeout:
                    raise EngineTimeoutError("redis pub/sub connection went silent")
                await pubsub.ping()
                continue
            last_heard = now
            if type(response) is list and len(response) == 3 and response[0] in _MESSAGE_KINDS:
                self._dispatch(response[1], response[2])
                continue
            message = await pubsub.handle_message(response)  # type: ignore[no-untyped-call]  # untyped in redis-py
            if message is None:
                continue
            kind = message["type"]
            if kind in ("message", "smessage"):
                self._dispatch(message["channel"], message["data"])
            elif kind in ("subscribe", "ssubscribe"):
                for future in self._confirmations.pop(message["channel"], []):
                    if not future.done():
                        future.set_result(None)
            elif kind == "sunsubscribe" and self._still_wanted(message["channel"]):
                # Pushed by the node: the channel's slot moved (a failover or a resharding).
                if moved is None:
                    raise EngineError(f"a Redis Cluster node dropped {message['channel']!r}")
                moved(message["channel"])

    def _still_wanted(self, pubsub_channel: bytes) -> bool:
        shards = self._shards
        anchors = shards.anchors if shards is not None else set()
        return (
            pubsub_channel in self._wanted
            or pubsub_channel == self._control_channel
            or pubsub_channel in anchors
        )

    def _fail_confirmations(self, error: EngineError, channels: set[bytes] | None = None) -> None:
        """Fail the subscribes waiting for confirmation: of ``channels``, or all of them."""
        if channels is None:
            confirmations, self._confirmations = self._confirmations, {}
        else:
            confirmations = {c: self._confirmations.pop(c) for c in channels if c in self._confirmations}
        for futures in confirmations.values():
            for future in futures:
                if not future.done():
                    future.set_exception(error)

    def _dispatch(self, pubsub_channel: bytes, body: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            if pubsub_channel == self._control_channel:
                handler.on_control(body)
                return
            if pubsub_channel not in self._wanted:
                return  # a late message for a channel this node just left
            channel = self._channel_of(pubsub_channel[len(self._channel_prefix) :].decode())
            kind = body[:1]
            if kind == b"p":
                publication, position = decode_publication(body)
                handler.on_publication(channel, publication, position)
            elif kind == b"j":
                handler.on_join(channel, decode_info(body[1:]))
            elif kind == b"l":
                handler.on_leave(channel, decode_info(body[1:]))
            else:
                log.warning("unknown message on redis channel %r dropped", pubsub_channel)
        except Exception:
            # One bad message or handler bug must not stop delivery for everyone else.
            log.exception("redis engine event on %r not delivered", pubsub_channel)

    # -- fan-out ------------------------------------------------------------------------

    def _pubsub_for(self, pubsub_channel: bytes) -> PubSub | None:
        """The pub/sub connection to carry ``pubsub_channel`` (None while reconnecting); on a Cluster the
        channel is placed on its shard's (``ShardDownError`` while that shard reconnects)."""
        if self._shards is not None:
            return self._shards.place(pubsub_channel)
        return self._pubsub

    def _pubsub_channel(self, channel: str) -> bytes:
        return self._channel_prefix + self._channel_part(channel).encode()

    async def subscribe(self, channel: str) -> None:
        if self._reader is None:
            raise EngineError("redis engine used before start()")
        pubsub_channel = self._pubsub_channel(channel)
        self._wanted.add(pubsub_channel)
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            async with self._guard("subscribe"):
                await self._connected.wait()
                pubsub = self._pubsub_for(pubsub_channel)
                if pubsub is None:
                    raise EngineError("redis pub/sub connection is reconnecting")
                self._confirmations.setdefault(pubsub_channel, []).append(confirmed)
                try:
                    if self.cluster:
                        await pubsub.ssubscribe(pubsub_channel)
                    else:
                        await pubsub.subscribe(pubsub_channel)
                except (AttributeError, RuntimeError) as exc:
                    # redis-py's way of saying the connection was dropped under us (or the event
                    # loop's, when the transport is already closed).
                    raise EngineError("redis pub/sub connection is closing") from exc
                await confirmed
        except BaseException:
            self._wanted.discard(pubsub_channel)
            if self._shards is not None:
                self._shards.release(pubsub_channel)
            raise
        finally:
            confirmed.cancel()  # no-op once confirmed; else nobody is left to wait for it
            waiting = self._confirmations.get(pubsub_channel, [])
            if confirmed in waiting:
                waiting.remove(confirmed)

    async def unsubscribe(self, channel: str) -> None:
        pubsub_channel = self._pubsub_channel(channel)
        self._wanted.discard(pubsub_channel)
        pubsub = self._shards.release(pubsub_channel) if self._shards is not None else self._pubsub
        if pubsub is not None:
            # Failing here means the connection is broken: the reconnect will not resubscribe,
            # and late messages for the channel are dropped, so there is nothing to report.
            # (redis-py raises AttributeError when the connection was dropped under us, and the
            # event loop RuntimeError when its transport is already closed.)
            with contextlib.suppress(RedisError, OSError, TimeoutError, AttributeError, RuntimeError):
                async with asyncio.timeout(self._timeout):
                    if self.cluster:
                        await pubsub.sunsubscribe(pubsub_channel)
                    else:
                        await pubsub.unsubscribe(pubsub_channel)

    async def publish(
        self,
        channel: str,
        data: bytes,
        *,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        history: HistoryOptions | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl_seconds: float = 300.0,
    ) -> PublishResult:
        keys, args = self.publish_call(
            channel,
            data,
            info=info,
            tags=tags,
            history=history,
            idempotency_key=idempotency_key,
            idempotency_ttl_seconds=idempotency_ttl_seconds,
        )
        size = int(args[1])
        pubsub_channel = self._pubsub_channel(channel)
        retry = idempotency_key is not None  # the script answers a retry of a stored one as a duplicate
        if self.durability is Durability.REPLICA and size > 0:
            duplicate, result = await self._call(
                "publish",
                lambda: self._publish_confirmed(keys, [*args, "0", self._publish_command], pubsub_channel),
                retry=retry,
            )
        else:
            duplicate, result = await self._call(
                "publish",
                lambda: self._script(self._publish_script, keys, [*args, "1", self._publish_command]),
                retry=retry,
            )
        offset, _, epoch = _as_str(result).partition(":")
        return PublishResult(StreamPosition(int(offset), epoch), duplicate=bool(duplicate))

    def publish_call(
        self,
        channel: str,
        data: bytes,
        *,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        history: HistoryOptions | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl_seconds: float = 300.0,
    ) -> tuple[list[str], list[Any]]:
        """The publish script's keys and its first arguments for one publication (the wire contract
        above; ``bench/engines/bench_cluster.py`` replays it pipelined to load Redis itself)."""
        validate_history(history)
        body = encode_body(data, info, tags, int(self._wall_clock() * 1000))
        size = history.size if history is not None else 0
        ttl_ms = meta_ttl_ms = 0
        if history is not None and size > 0:
            ttl_ms = max(1, int(history.ttl_seconds * 1000))
            meta_ttl = history.meta_ttl_seconds or self._default_meta_ttl
            meta_ttl_ms = max(ttl_ms, int(meta_ttl * 1000))
        idempotency_ttl_ms = 0
        if self.cluster:  # on the channel's slot, beside its stream and meta
            idempotency_key_name = f"{self.prefix}.idem.{channel_part(channel)}:{idempotency_key or ''}"
        else:
            idempotency_key_name = self._key("idem", f"{len(channel)}:{channel}:{idempotency_key or ''}")
        if idempotency_key is not None:
            idempotency_ttl_ms = max(1, int(idempotency_ttl_seconds * 1000))
        keys = [self._key("stream", channel), self._key("meta", channel), idempotency_key_name]
        pubsub_channel = self._pubsub_channel(channel)
        return keys, [body, size, ttl_ms, meta_ttl_ms, new_epoch(), idempotency_ttl_ms, pubsub_channel]

    def fanout_frame(self, channel: str, data: bytes) -> Fanout:
        """``data`` as one publication without history (offset 0, no epoch, no publisher info), the
        pub/sub message the publish script would send for it: for a store on the same Redis that
        publishes in a script of its own, on the channel's slot (``engines.docs``: a document's update
        appended and published in one round trip). Such a publish skips this engine's circuit breaker
        and degraded-mode fallback: it is part of the store's write, which fails or succeeds with it."""
        frame = b"p0::" + encode_body(data, None, None, int(self._wall_clock() * 1000))
        return Fanout(self._pubsub_channel(channel), frame, self._publish_command)

    @property
    def publish_script_sha(self) -> str:
        """The SHA-1 of the publish script (``EVALSHA``): ``publish_call``'s keys and arguments, then
        ``"1"`` (deliver now) and the publish command (``publish``/``spublish``)."""
        return str(self._publish_script.sha)

    async def _publish_confirmed(self, keys: list[str], args: list[Any], pubsub_channel: bytes) -> Any:
        """Replica durability: the script (stores, does not PUBLISH) and ``WAIT 1`` in one pipeline, on
        one connection, so the WAIT covers the write; then ``_RELEASE`` up to its offset. Refused
        (nothing acknowledged, nothing delivered) when no replica confirmed it in time."""
        script = self._publish_script
        if self.cluster:
            reply, acknowledged = await self._store_and_wait_on_shard(script, keys, args)
            return await self._release_confirmed(reply, acknowledged, keys, pubsub_channel)
        stored = self._pipeline.call("EVALSHA", script.sha, len(keys), *keys, *args)
        confirmed = self._pipeline.call("WAIT", 1, self._replica_wait_ms)
        try:
            reply = await stored
        except NoScriptError:
            await confirmed
            await self.client.script_load(script.script)
            stored = self._pipeline.call("EVALSHA", script.sha, len(keys), *keys, *args)
            confirmed = self._pipeline.call("WAIT", 1, self._replica_wait_ms)
            reply = await stored
        return await self._release_confirmed(reply, int(await confirmed), keys, pubsub_channel)

    async def _store_and_wait_on_shard(
        self, script: Any, keys: list[str], args: list[Any]
    ) -> tuple[Any, int]:
        """On a Cluster: the script and ``WAIT 1`` in one pipeline to the primary of the keys' slot (the
        cluster pipeline sends one node's commands on one connection, in order), so the WAIT covers
        the write; EVAL when that node lost its scripts."""
        cluster: Any = self.client
        node = cluster.get_node_from_key(keys[0])
        for command, body in (("EVALSHA", script.sha), ("EVAL", script.script)):
            async with cluster.pipeline(transaction=False) as pipe:
                pipe.execute_command(command, body, len(keys), *keys, *args)
                pipe.execute_command("WAIT", 1, self._replica_wait_ms, target_nodes=node)
                reply, acknowledged = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, NoScriptError):
                break
        for result in (reply, acknowledged):
            if isinstance(result, Exception):
                raise result
        return reply, int(acknowledged)

    async def _release_confirmed(
        self, reply: Any, acknowledged: int, keys: list[str], pubsub_channel: bytes
    ) -> Any:
        if acknowledged < 1:
            self.unconfirmed += 1
            raise EngineError(
                f"publication not confirmed by a replica within {self._replica_wait_ms} ms "
                "(stored on the primary, not acknowledged, not delivered yet)"
            )
        offset = _as_str(reply[1]).partition(":")[0]
        await self._script(self._release_script, keys[:2], [offset, pubsub_channel, self._publish_command])
        return reply

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        message = b"j" + encode_info(info)
        await self._call(
            "publish join",
            lambda: self._pipeline.call(self._publish_command, self._pubsub_channel(channel), message),
        )

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        message = b"l" + encode_info(info)
        await self._call(
            "publish leave",
            lambda: self._pipeline.call(self._publish_command, self._pubsub_channel(channel), message),
        )

    async def publish_control(self, payload: bytes) -> None:
        channel = self._control_channel
        command = self._publish_command
        await self._call("publish control", lambda: self._pipeline.call(command, channel, payload))

    # -- history ------------------------------------------------------------------------

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
        meta_ttl_seconds: float = 0.0,
        presence: tuple[ClientInfo, float] | None = None,
    ) -> tuple[list[Publication], StreamPosition]:
        """``presence``: (info, ttl seconds) to add to the channel's presence in the same script."""
        command, start, end = "", "", ""
        if limit != 0:
            if not reverse:
                command, start, end = "xrange", "-" if since is None else str(since.offset + 1), "+"
            elif since is None:
                command, start, end = "xrevrange", "+", "-"
            elif since.offset > 1:
                command, start, end = "xrevrange", str(since.offset - 1), "-"
        meta_ttl_ms = int((meta_ttl_seconds or self._default_meta_ttl) * 1000)
        keys = [self._key("stream", channel), self._key("meta", channel)]
        args: list[Any] = [
            new_epoch(),
            meta_ttl_ms,
            1 if meta_ttl_seconds > 0 else 0,
            "" if since is None else "=" + since.epoch,
            command,
            start,
            end,
            max(limit, 0),
        ]
        script, what = self._history_script, "history"
        if presence is not None:
            info, ttl_seconds = presence
            script, what = self._history_with_presence_script, "history with presence"
            keys += self._presence_keys(channel)
            args += [info.client, encode_info(info), info.user, max(1, int(ttl_seconds * 1000))]
        top, epoch, entries = await self._call(what, lambda: self._script(script, keys, args))
        publications = [
            decode_body(fields[1], int(_as_str(entry_id).partition("-")[0])) for entry_id, fields in entries
        ]
        return publications, StreamPosition(int(top), _as_str(epoch))

    async def history_with_presence(
        self,
        channel: str,
        info: ClientInfo,
        *,
        presence_ttl_seconds: float,
        since: StreamPosition | None = None,
        limit: int = 0,
        meta_ttl_seconds: float = 0.0,
    ) -> tuple[list[Publication], StreamPosition]:
        """A subscribe's engine work as one script: ``add_presence`` then ``history`` (one round trip,
        one command to pack and one reply to parse, one script run in Redis)."""
        return await self.history(
            channel,
            since=since,
            limit=limit,
            meta_ttl_seconds=meta_ttl_seconds,
            presence=(info, presence_ttl_seconds),
        )

    async def remove_history(self, channel: str) -> None:
        keys = self._key("stream", channel), self._key("meta", channel)
        await self._call("remove history", lambda: self.client.delete(*keys))

    # -- presence -----------------------------------------------------------------------

    def _presence_keys(self, channel: str) -> list[str]:
        return [
            self._key("presence.data", channel),
            self._key("presence.users", channel),
            self._key("presence.expire", channel),
        ]

    async def add_presence(self, channel: str, info: ClientInfo, *, ttl_seconds: float) -> None:
        args = [info.client, encode_info(info), info.user, max(1, int(ttl_seconds * 1000))]
        keys = self._presence_keys(channel)
        await self._call("add presence", lambda: self._script(self._add_presence_script, keys, args))

    async def remove_presence(self, channel: str, client_id: str) -> None:
        # A script through the shared pipeline: batched with the other connections' calls of the same
        # loop iteration (a MULTI of its own cost a pool checkout and a round trip per leaving client).
        keys = self._presence_keys(channel)
        await self._call(
            "remove presence", lambda: self._script(self._remove_presence_script, keys, [client_id])
        )

    async def leave_with_presence(self, channel: str, info: ClientInfo) -> None:
        """``remove_presence`` and ``publish_leave`` as one script (one round trip, one command)."""
        keys = self._presence_keys(channel)
        args = [info.client, self._pubsub_channel(channel), b"l" + encode_info(info), self._publish_command]
        await self._call("leave", lambda: self._script(self._remove_presence_script, keys, args))

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        keys = self._presence_keys(channel)
        flat = await self._call("presence", lambda: self._script(self._presence_script, keys, []))
        return {_as_str(flat[i]): decode_info(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        keys = self._presence_keys(channel)
        clients, users = await self._call(
            "presence stats", lambda: self._script(self._presence_stats_script, keys, [])
        )
        return int(clients), int(users)

    # -- cluster-wide limits ----------------------------------------------------------------

    async def take_token(self, key: str, *, rate_per_second: float, burst: int) -> float:
        validate_bucket(rate_per_second, burst)
        keys = [self._key("bucket", key)]
        args: list[str | int] = [repr(float(rate_per_second)), burst]
        # Through the shared pipeline, as every hot script: a publish's token goes out with the other
        # connections' calls of the same loop iteration (a script call of its own cost a pool checkout,
        # a write and a read per publish: a quarter of a publishing node's CPU in the cross-node profile).
        wait = await self._call("take token", lambda: self._script(self._take_token_script, keys, args))
        return float(wait)

    # -- cluster-wide connection slots ---------------------------------------------------------

    async def take_slot(
        self, scope: SlotScope, subject: str, holder: str, *, limit: int, ttl_seconds: float
    ) -> bool:
        async with self._guard("take slot"):
            held = await self._script(
                self._take_slot_script,
                [keys.slot_key(self.prefix, scope, subject)],
                [holder, limit, max(1, int(ttl_seconds * 1000))],
            )
        return bool(int(held))

    async def release_slot(self, scope: SlotScope, subject: str, holder: str) -> None:
        async with self._guard("release slot"):
            await self._pipeline.call("ZREM", keys.slot_key(self.prefix, scope, subject), holder)

    async def refresh_slots(self, slots: Sequence[tuple[SlotScope, str, str]], *, ttl_seconds: float) -> None:
        ttl_ms = max(1, int(ttl_seconds * 1000))
        # One single-key script per slot (a Redis Cluster routes each by its key), pipelined a chunk at a
        # time, each chunk with its own deadline: thousands at once held Redis and the call deadline long
        # enough on a loaded machine to time out publishes beside them and open the circuit.
        for start in range(0, len(slots), SLOT_REFRESH_CHUNK):
            async with self._guard("refresh slots"):
                await asyncio.gather(
                    *(
                        self._script(
                            self._refresh_slot_script,
                            [keys.slot_key(self.prefix, scope, subject)],
                            [ttl_ms, holder],
                        )
                        for scope, subject, holder in slots[start : start + SLOT_REFRESH_CHUNK]
                    )
                )

    # -- a person's state ----------------------------------------------------------------------

    async def person_read(self, user: str, kinds: Sequence[UserKind]) -> dict[str, bytes | list[bytes]]:
        async with self._guard("person read"), self.client.pipeline(transaction=False) as pipe:
            for kind in kinds:
                key = keys.user_key(self.prefix, user, kind)
                if kind.shape is keys.Shape.LIST:
                    pipe.lrange(key, 0, -1)
                else:
                    pipe.get(key)
            values = await pipe.execute()
        found: dict[str, bytes | list[bytes]] = {}
        for kind, value in zip(kinds, values, strict=True):
            if value:  # a missing string is None, a missing list empty
                found[kind.name] = value
        return found

    async def person_write(self, user: str, kind: UserKind, value: bytes, *, ttl_seconds: float) -> None:
        async with self._guard("person write"):
            await self._pipeline.call(
                "SET", keys.user_key(self.prefix, user, kind), value, "PX", max(1, int(ttl_seconds * 1000))
            )

    async def person_append(
        self, user: str, kind: UserKind, items: Sequence[bytes], *, max_items: int, ttl_seconds: float
    ) -> None:
        if not items:
            return
        key = keys.user_key(self.prefix, user, kind)
        async with self._guard("person append"), self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *items)
            pipe.ltrim(key, -max_items, -1)
            pipe.pexpire(key, max(1, int(ttl_seconds * 1000)))
            await pipe.execute()

    async def person_erase(self, user: str, kinds: Sequence[UserKind]) -> None:
        async with self._guard("person erase"):
            await self.client.delete(*(keys.user_key(self.prefix, user, kind) for kind in kinds))

    # -- data rights (docs/data-rights.md) --------------------------------------------------

    async def _entries(self, key: bytes) -> list[tuple[bytes, bytes]]:
        """A stream's kept entries as (entry id, body)."""
        reply: Any = await self.client.xrange(key)
        return [(entry_id, fields[b"d"]) for entry_id, fields in reply]

    async def _scan(self, pattern: str) -> list[bytes]:
        """Keys matching ``pattern`` (on a Cluster, of every primary: redis-py scans each)."""
        keys: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=1000):
            keys.append(key)
        return keys

    async def _users_publications(self, user: str) -> dict[str, list[tuple[bytes, Publication]]]:
        """Per channel, the kept publications that are ``user``'s (``domain.datarights``), with ids."""
        stream_prefix = f"{self.prefix}.stream."
        found: dict[str, list[tuple[bytes, Publication]]] = {}
        for key in await self._scan(stream_prefix + "*"):
            channel = self._channel_of(key.decode()[len(stream_prefix) :])
            for entry_id, body in await self._entries(key):
                publication = decode_body(body, int(_as_str(entry_id).partition("-")[0]))
                publisher = publication.info.user if publication.info is not None else None
                if publication_concerns(channel, publisher, publication.data, user):
                    found.setdefault(channel, []).append((entry_id, publication))
        return found

    async def _users_presence(self, user: str) -> dict[str, dict[str, ClientInfo]]:
        users_prefix = f"{self.prefix}.presence.users."
        client: Any = self.client
        found: dict[str, dict[str, ClientInfo]] = {}
        for key in await self._scan(users_prefix + "*"):
            channel = self._channel_of(key.decode()[len(users_prefix) :])
            owners = await client.hgetall(key)
            clients = [_as_str(c) for c, owner in owners.items() if _as_str(owner) == user]
            if clients:
                infos = await client.hmget(self._key("presence.data", channel), clients)
                found[channel] = {c: decode_info(i) for c, i in zip(clients, infos, strict=True) if i}
        return found

    async def _person_state(self, user: str, kinds: Sequence[UserKind]) -> dict[str, Any]:
        client: Any = self.client
        found: dict[str, Any] = {}
        for kind in kinds:
            key = user_key(self.prefix, user, kind)
            match _as_str(await client.type(key)):
                case "string":
                    value: Any = _as_str(await client.get(key))
                case "hash":
                    value = {_as_str(k): _as_str(v) for k, v in (await client.hgetall(key)).items()}
                case "list":
                    value = [_as_str(v) for v in await client.lrange(key, 0, -1)]
                case "set":
                    value = sorted(_as_str(v) for v in await client.smembers(key))
                case "zset":
                    value = [[_as_str(m), sc] for m, sc in await client.zrange(key, 0, -1, withscores=True)]
                case _:
                    continue
            found[kind.name] = value
        return found

    async def personal_data(self, user: str, kinds: Sequence[UserKind] = USER_KINDS) -> PersonalData:
        """Everything this engine keeps about ``user``: kept publications, presence, person state."""
        async with self._guard("export"):
            publications = await self._users_publications(user)
            presence = await self._users_presence(user)
            person = await self._person_state(user, kinds)
        return PersonalData(
            {channel: [p for _, p in entries] for channel, entries in publications.items()}, presence, person
        )

    async def erase_personal(self, user: str, kinds: Sequence[UserKind] = USER_KINDS) -> dict[str, int]:
        """Remove what :meth:`personal_data` finds; how many publications, presence entries and person
        keys went. Streams keep their offsets and epochs (XDEL): subscribers are not disturbed."""
        async with self._guard("erase"):
            publications = await self._users_publications(user)
            removed = 0
            for channel, entries in publications.items():
                removed += int(await self.client.xdel(self._key("stream", channel), *[i for i, _ in entries]))
            presence = await self._users_presence(user)
            for channel, clients in presence.items():
                data, users, expire = self._presence_keys(channel)
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.hdel(data, *clients)
                    pipe.hdel(users, *clients)
                    pipe.zrem(expire, *clients)
                    await pipe.execute()
            person_keys = [user_key(self.prefix, user, kind) for kind in kinds]
            deleted_keys = int(await self.client.delete(*person_keys)) if person_keys else 0
        return {
            "publications": removed,
            "presence": sum(len(c) for c in presence.values()),
            "person_keys": deleted_keys,
        }

    async def _namespace_streams(self, namespace: str) -> list[bytes]:
        """The stream keys of ``namespace``'s channels (on a Cluster every stream is looked at: a
        channel holding a brace is tagged by its SHA-1, so no pattern finds its namespace)."""
        if not self.cluster:
            return await self._scan(f"{self.prefix}.stream.{namespace}:*")
        stream_prefix = f"{self.prefix}.stream."
        return [
            key
            for key in await self._scan(stream_prefix + "*")
            if self._channel_of(key.decode()[len(stream_prefix) :]).startswith(namespace + ":")
        ]

    async def expire_history(self, namespace: str, older_than_ms: int) -> int:
        """Remove the kept publications of ``namespace`` published before ``older_than_ms`` (wall
        clock, the header's ``t``); how many went."""
        removed = 0
        async with self._guard("expire history"):
            for key in await self._namespace_streams(namespace):
                old = [
                    entry_id
                    for entry_id, body in await self._entries(key)
                    if decode_body(body, 0).time_ms < older_than_ms
                ]
                if old:
                    removed += int(await self.client.xdel(key, *old))
        return removed
