"""The event log's interface, its records, its errors and input checks.

An :class:`EventLog` is an append-only, replayable sequence of
:class:`~resonance_worker.domain.events.Event` records with one consumer group
(the projector's). Every entry gets a *log id* ``"<ms>-<seq>"``: the milliseconds
of the log's clock when it was appended and a sequence number within that
millisecond, so log ids are strictly increasing and ``replay`` windows are in
append time (not event time: events may arrive late, see docs/living-core.md).

Delivery is at-least-once: ``read_new`` hands entries to a consumer and keeps
them *pending* until ``ack``; entries a consumer never acknowledged (it crashed)
are taken over by another with ``claim_stale``. Consumers must therefore be
idempotent, which event ids make easy.

Errors::

    EngineError (resonance_worker.errors)
    └── EventLogError               the log's store failed; nothing was stored or acknowledged
        └── EventLogTimeoutError    ... because a call exceeded its deadline
    ValueError
    └── EventLogInputError          a bad argument (count, window, log id, not an Event)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from resonance_worker.domain.events import Event, EventFormatError
from resonance_worker.errors import EngineError, EngineTimeoutError

DEFAULT_GROUP = "projector"
MAX_BATCH = 10_000
"""The most entries one read, claim or replay returns."""
MAX_BLOCK_MS = 60_000

_LOG_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")


class EventLogError(EngineError):
    """The log's store failed or is unreachable; retry later. Nothing was half-done."""


class EventLogTimeoutError(EventLogError, EngineTimeoutError):
    """A log call exceeded its deadline (its outcome is unknown for ``append``)."""


class EventLogInputError(ValueError):
    """An argument the log refuses: the message says which and why."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of the log is kept. At most one of the two bounds.

    ``max_len``: keep about the newest N entries (Redis ``XADD MAXLEN ~ N``; the
    memory log trims exactly). ``max_age_ms``: drop entries appended more than this
    long ago (``XADD MINID ~ <now − age>``, ``now`` on Redis's clock; the memory log's clock).
    Trimming never waits for the projector: retention must exceed the longest
    projector outage you want to survive, or unprojected events are lost (they are
    counted as ``trimmed`` when a claim finds them gone).
    """

    max_len: int | None = None
    max_age_ms: int | None = None

    def __post_init__(self) -> None:
        if self.max_len is not None and self.max_age_ms is not None:
            raise EventLogInputError("retention takes max_len or max_age_ms, not both")
        if self.max_len is not None and (isinstance(self.max_len, bool) or self.max_len < 1):
            raise EventLogInputError("retention max_len must be a positive integer")
        if self.max_age_ms is not None and (isinstance(self.max_age_ms, bool) or self.max_age_ms < 1):
            raise EventLogInputError("retention max_age_ms must be a positive integer")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One delivered entry. ``event`` is None when the stored record is not a valid
    event (``problem`` says why): the consumer should acknowledge and count it."""

    log_id: str
    event: Event | None
    problem: str | None = None
    trace: str | None = None
    """The W3C ``traceparent`` of the span that appended it (kept beside the event, not in it: the
    event's id stays a function of the fact alone), so its projection continues that trace."""


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What ``claim_stale`` took over, and which stale ids had been trimmed away."""

    entries: list[LogEntry]
    trimmed: list[str]


@dataclass(frozen=True, slots=True)
class LogLag:
    """How far the group is behind: delivered-but-unacknowledged, and never delivered."""

    pending: int
    undelivered: int | None
    """None when the store cannot tell (Redis after deletions inside the stream)."""

    def to_dict(self) -> dict[str, Any]:
        return {"pending": self.pending, "undelivered": self.undelivered}


class EventLog(Protocol):
    """The durable, replayable log (Redis Stream) or its single-node stand-in (memory)."""

    group: str

    async def append(self, event: Event, *, trace: str | None = None) -> str:
        """Store ``event`` (with the ``traceparent`` it was appended under, if any); return its log
        id once it is stored."""
        ...

    async def append_many(self, events: Sequence[Event], *, trace: str | None = None) -> list[str]:
        """Store several events in order (one round trip), all under ``trace`` if given; return
        their log ids."""
        ...

    async def read_new(self, consumer: str, count: int = 100, block_ms: int = 0) -> list[LogEntry]:
        """Entries never delivered to the group, now pending on ``consumer``; waits up to
        ``block_ms`` for one when there are none (0: do not wait)."""
        ...

    async def ack(self, log_ids: Sequence[str]) -> int:
        """Acknowledge entries; return how many were pending."""
        ...

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int = 100) -> ClaimResult:
        """Take over pending entries idle for at least ``min_idle_ms`` (their consumer died)."""
        ...

    async def lag(self) -> LogLag:
        """The group's backlog."""
        ...

    async def replay(
        self, since_ms: int | None = None, until_ms: int | None = None, *, limit: int = 1000
    ) -> list[Event]:
        """Events appended in ``[since_ms, until_ms]`` (log clock, inclusive), oldest first."""
        ...

    async def length(self) -> int:
        """Entries currently kept."""
        ...

    async def select(
        self, match: Callable[[Event], bool], *, until_ms: int | None = None
    ) -> list[tuple[str, Event]]:
        """Every kept event (appended up to ``until_ms``, log clock) for which ``match`` holds, with its
        log id, oldest first: a scan of the whole log (data rights and retention, not a hot path)."""
        ...

    async def delete(self, log_ids: Sequence[str]) -> int:
        """Remove entries (``XDEL``); how many were there. An entry pending on a consumer is dropped
        from its pending list too (a claim reports it as trimmed)."""
        ...


# ------------------------------------------------------------------ input checks


def check_event(event: object) -> Event:
    if not isinstance(event, Event):
        raise EventLogInputError(f"only Event records can be appended, got {type(event).__name__}")
    return event


def check_consumer(consumer: object) -> str:
    if not isinstance(consumer, str) or not consumer or len(consumer) > 200:
        raise EventLogInputError("consumer must be a non-empty string of at most 200 characters")
    return consumer


def check_count(count: object, what: str = "count") -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
        raise EventLogInputError(f"{what} must be an integer in 1..{MAX_BATCH}, got {count!r}")
    return count


def check_millis(value: object, what: str, *, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EventLogInputError(f"{what} must be a non-negative integer of milliseconds, got {value!r}")
    if maximum is not None and value > maximum:
        raise EventLogInputError(f"{what} must be at most {maximum} ms, got {value}")
    return value


def check_window(since_ms: object, until_ms: object) -> tuple[int | None, int | None]:
    since = None if since_ms is None else check_millis(since_ms, "since_ms")
    until = None if until_ms is None else check_millis(until_ms, "until_ms")
    if since is not None and until is not None and since > until:
        raise EventLogInputError(f"since_ms ({since}) is after until_ms ({until})")
    return since, until


def parse_log_id(log_id: object) -> tuple[int, int]:
    """``"<ms>-<seq>"`` → ``(ms, seq)``; anything else is an input error."""
    if isinstance(log_id, bytes):
        log_id = log_id.decode("ascii", "replace")
    match = _LOG_ID.match(log_id) if isinstance(log_id, str) else None
    if match is None:
        raise EventLogInputError(f"not a log id (<ms>-<seq>): {log_id!r}")
    return int(match[1]), int(match[2])


def check_log_ids(log_ids: object) -> list[str]:
    if isinstance(log_ids, str | bytes) or not isinstance(log_ids, Sequence):
        raise EventLogInputError("log ids must be a sequence of '<ms>-<seq>' strings")
    result = []
    for log_id in log_ids:
        ms, seq = parse_log_id(log_id)
        result.append(f"{ms}-{seq}")
    return result


def check_trace(trace: object) -> str | None:
    """A ``traceparent`` to keep beside events: None, or at most 128 printable ASCII characters."""
    if trace is None or trace == "":
        return None
    if not isinstance(trace, str) or len(trace) > 128 or not trace.isascii() or not trace.isprintable():
        raise EventLogInputError("trace must be a W3C traceparent string of at most 128 characters")
    return trace


def decode_entry(log_id: str, body: bytes | str | None, trace: bytes | str | None = None) -> LogEntry:
    """A stored body → an entry; an invalid record becomes an entry with a ``problem``."""
    if body is None:
        return LogEntry(log_id, None, "entry has no event field")
    if isinstance(trace, bytes):
        trace = trace.decode("ascii", "replace")
    try:
        return LogEntry(log_id, Event.from_json(body), trace=trace or None)
    except EventFormatError as exc:
        return LogEntry(log_id, None, f"not a valid event: {exc}")
