"""Queries over the temporal graph, for the RPC and the server API.

Each is an ``async`` function taking the driver (and the log, for replay) and
returning plain dataclasses with ``to_dict()`` for JSON. Times are event times in
seconds (``Event.at``); windows are inclusive. Neo4j failures and timeouts raise
:class:`GraphError`; bad arguments :class:`GraphQueryInputError`.

Quadrants (for the transition matrix) split the circumplex at ``valence_split``
(default 0) and ``arousal_split`` (default 0.5); a value exactly on a split goes
to the pleasant / activated side::

    pleasant_activated     v ≥ vs, a ≥ as        unpleasant_activated   v < vs, a ≥ as
    pleasant_calm          v ≥ vs, a < as        unpleasant_calm        v < vs, a < as
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import neo4j

from resonance_worker.domain.events import EventType
from resonance_worker.eventlog.base import EventLog
from resonance_worker.graph.errors import GraphError, GraphQueryInputError

QUADRANTS = ("pleasant_activated", "pleasant_calm", "unpleasant_activated", "unpleasant_calm")
DEFAULT_TIMEOUT_S = 4.0
"""Under the SDKs' default command timeout (5 s in centrifuge-js and centrifuge-python), so a client
waiting on a hung Neo4j gets the honest error 108, not its own timeout."""
MAX_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class StateRecord:
    """One projected state of a person."""

    id: str
    user_id: str
    at: float
    valence: float
    arousal: float
    label: str | None
    source: str | None
    session_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TransitionMatrix:
    """Counts of consecutive-state transitions (along ``NEXT``) between quadrants."""

    user_id: str
    valence_split: float
    arousal_split: float
    counts: dict[str, dict[str, int]]
    """``counts[from][to]``, every quadrant present (zeros included)."""
    total: int

    @property
    def probabilities(self) -> dict[str, dict[str, float | None]]:
        """Row-normalised counts: P(next quadrant | this quadrant); None for a row never left."""
        result: dict[str, dict[str, float | None]] = {}
        for source, row in self.counts.items():
            row_total = sum(row.values())
            result[source] = {target: (n / row_total if row_total else None) for target, n in row.items()}
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "quadrants": list(QUADRANTS),
            "valence_split": self.valence_split,
            "arousal_split": self.arousal_split,
            "counts": self.counts,
            "probabilities": self.probabilities,
            "total": self.total,
        }


@dataclass(frozen=True, slots=True)
class HourBucket:
    start_hour: int
    """Local hour the bucket starts at (0, bucket_hours, 2·bucket_hours, …)."""
    count: int
    mean_valence: float | None
    mean_arousal: float | None


@dataclass(frozen=True, slots=True)
class TimeOfDay:
    """Mean state per local time-of-day bucket (local = UTC + ``utc_offset_minutes``)."""

    user_id: str
    utc_offset_minutes: int
    bucket_hours: int
    buckets: list[HourBucket]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Partner:
    """Someone a person resonated with: how often, how strongly, when last, where."""

    user_id: str
    times: int
    mean_score: float
    last_at: float
    rooms: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ argument checks


def _user(user_id: object) -> str:
    if not isinstance(user_id, str) or not user_id or len(user_id) > 256:
        raise GraphQueryInputError("user_id must be a non-empty string of at most 256 characters")
    return user_id


def _time(value: object, what: str, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GraphQueryInputError(f"{what} must be a finite number of seconds, got {value!r}")
    return float(value)


def _window(since: object, until: object) -> tuple[float, float]:
    low, high = _time(since, "since"), _time(until, "until")
    if low is not None and high is not None and low > high:
        raise GraphQueryInputError(f"since ({low}) is after until ({high})")
    return (-math.inf if low is None else low), (math.inf if high is None else high)


def _limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise GraphQueryInputError(f"limit must be an integer in 1..{MAX_LIMIT}, got {limit!r}")
    return limit


async def _read(
    driver: neo4j.AsyncDriver,
    query: str,
    parameters: Mapping[str, Any],
    database: str | None,
    deadline_s: float,
) -> list[dict[str, Any]]:
    try:
        # One auto-commit read, without the driver's retries: an RPC caller wants an answer or an
        # error within its deadline, not 30 s of reconnection attempts.
        async with (
            asyncio.timeout(deadline_s),
            driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session,
        ):
            result = await session.run(query, dict(parameters))
            records = [record async for record in result]
    except TimeoutError as exc:
        raise GraphError(f"graph query timed out after {deadline_s:g} s") from exc
    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as exc:
        raise GraphError(f"graph query failed: {type(exc).__name__}: {exc}") from exc
    return [record.data() for record in records]


def _state(row: Mapping[str, Any]) -> StateRecord:
    return StateRecord(
        id=row["id"],
        user_id=row["user_id"],
        at=row["at"],
        valence=row["valence"],
        arousal=row["arousal"],
        label=row["label"],
        source=row["source"],
        session_id=row["session_id"],
    )


_STATE_FIELDS = (
    "s.id AS id, s.user_id AS user_id, s.at AS at, s.valence AS valence, s.arousal AS arousal, "
    "s.label AS label, s.source AS source, s.session_id AS session_id"
)


# ------------------------------------------------------------------ queries


async def timeline(
    driver: neo4j.AsyncDriver,
    user_id: str,
    since: float | None = None,
    until: float | None = None,
    *,
    limit: int = 1000,
    database: str | None = None,
    deadline_s: float = DEFAULT_TIMEOUT_S,
) -> list[StateRecord]:
    """A person's states with ``since ≤ at ≤ until``, oldest first (at most ``limit``, the oldest ones)."""
    low, high = _window(since, until)
    rows = await _read(
        driver,
        f"MATCH (s:State {{user_id: $user}}) WHERE $low <= s.at <= $high "
        f"RETURN {_STATE_FIELDS} ORDER BY s.at, s.id LIMIT $limit",
        {"user": _user(user_id), "low": low, "high": high, "limit": _limit(limit)},
        database,
        deadline_s,
    )
    return [_state(row) for row in rows]


async def state_as_of(
    driver: neo4j.AsyncDriver,
    user_id: str,
    at: float,
    *,
    database: str | None = None,
    deadline_s: float = DEFAULT_TIMEOUT_S,
) -> StateRecord | None:
    """The as-of view: the person's newest state at or before ``at`` (None if there is none yet).

    Answers from the events projected so far: an event for an earlier time that
    arrives later changes the answer for that time (the graph is by event time).
    """
    rows = await _read(
        driver,
        f"MATCH (s:State {{user_id: $user}}) WHERE s.at <= $at "
        f"RETURN {_STATE_FIELDS} ORDER BY s.at DESC, s.id DESC LIMIT 1",
        {"user": _user(user_id), "at": _time(at, "at", optional=False)},
        database,
        deadline_s,
    )
    return _state(rows[0]) if rows else None


_QUADRANT = (
    "CASE WHEN {s}.valence >= $vs THEN "
    "CASE WHEN {s}.arousal >= $as THEN 'pleasant_activated' ELSE 'pleasant_calm' END "
    "ELSE CASE WHEN {s}.arousal >= $as THEN 'unpleasant_activated' ELSE 'unpleasant_calm' END END"
)


async def transition_matrix(
    driver: neo4j.AsyncDriver,
    user_id: str,
    since: float | None = None,
    until: float | None = None,
    *,
    valence_split: float = 0.0,
    arousal_split: float = 0.5,
    database: str | None = None,
    deadline_s: float = DEFAULT_TIMEOUT_S,
) -> TransitionMatrix:
    """Transitions between quadrants along ``NEXT``, for pairs with both states in the window."""
    low, high = _window(since, until)
    vs = _time(valence_split, "valence_split", optional=False)
    arousal = _time(arousal_split, "arousal_split", optional=False)
    assert vs is not None
    assert arousal is not None
    if not -1 <= vs <= 1 or not 0 <= arousal <= 1:
        raise GraphQueryInputError("valence_split must be in [-1, 1] and arousal_split in [0, 1]")
    rows = await _read(
        driver,
        "MATCH (a:State {user_id: $user})-[:NEXT]->(b:State) "
        "WHERE $low <= a.at <= $high AND b.at <= $high "
        f"WITH {_QUADRANT.format(s='a')} AS source, {_QUADRANT.format(s='b')} AS target "
        "RETURN source, target, count(*) AS n",
        {"user": _user(user_id), "low": low, "high": high, "vs": vs, "as": arousal},
        database,
        deadline_s,
    )
    counts = {source: dict.fromkeys(QUADRANTS, 0) for source in QUADRANTS}
    for row in rows:
        counts[row["source"]][row["target"]] = row["n"]
    return TransitionMatrix(_user(user_id), vs, arousal, counts, sum(row["n"] for row in rows))


async def time_of_day(
    driver: neo4j.AsyncDriver,
    user_id: str,
    since: float | None = None,
    until: float | None = None,
    *,
    utc_offset_minutes: int = 0,
    bucket_hours: int = 1,
    database: str | None = None,
    deadline_s: float = DEFAULT_TIMEOUT_S,
) -> TimeOfDay:
    """Mean valence and arousal per local time-of-day bucket; empty buckets have count 0 and no means."""
    low, high = _window(since, until)
    if isinstance(utc_offset_minutes, bool) or not isinstance(utc_offset_minutes, int):
        raise GraphQueryInputError("utc_offset_minutes must be an integer")
    if not -14 * 60 <= utc_offset_minutes <= 14 * 60:
        raise GraphQueryInputError("utc_offset_minutes must be within ±14 hours")
    if (
        isinstance(bucket_hours, bool)
        or not isinstance(bucket_hours, int)
        or bucket_hours not in (1, 2, 3, 4, 6, 8, 12, 24)
    ):
        raise GraphQueryInputError("bucket_hours must divide 24 (1, 2, 3, 4, 6, 8, 12 or 24)")
    rows = await _read(
        driver,
        "MATCH (s:State {user_id: $user}) WHERE $low <= s.at <= $high "
        "WITH s, toInteger(floor((((s.at + $offset) % 86400.0) + 86400.0) % 86400.0 / 3600.0)) AS hour "
        "WITH (hour / $bucket) * $bucket AS start, s "
        "RETURN start, count(*) AS n, avg(s.valence) AS valence, avg(s.arousal) AS arousal",
        {
            "user": _user(user_id),
            "low": low,
            "high": high,
            "offset": utc_offset_minutes * 60.0,
            "bucket": bucket_hours,
        },
        database,
        deadline_s,
    )
    found = {row["start"]: row for row in rows}
    buckets = []
    for start in range(0, 24, bucket_hours):
        row = found.get(start)
        buckets.append(
            HourBucket(start, row["n"], row["valence"], row["arousal"])
            if row is not None
            else HourBucket(start, 0, None, None)
        )
    return TimeOfDay(_user(user_id), utc_offset_minutes, bucket_hours, buckets)


async def resonance_partners(
    driver: neo4j.AsyncDriver,
    user_id: str,
    since: float | None = None,
    until: float | None = None,
    *,
    database: str | None = None,
    deadline_s: float = DEFAULT_TIMEOUT_S,
) -> list[Partner]:
    """Who the person resonated with (``RESONATED_WITH``, either direction), strongest mean first."""
    low, high = _window(since, until)
    rows = await _read(
        driver,
        "MATCH (:User {id: $user})-[r:RESONATED_WITH]-(other:User) WHERE $low <= r.at <= $high "
        "RETURN other.id AS user_id, count(r) AS times, avg(r.score) AS mean_score, max(r.at) AS last_at, "
        "collect(DISTINCT r.room_id) AS rooms ORDER BY mean_score DESC, user_id",
        {"user": _user(user_id), "low": low, "high": high},
        database,
        deadline_s,
    )
    return [
        Partner(row["user_id"], row["times"], row["mean_score"], row["last_at"], sorted(row["rooms"]))
        for row in rows
    ]


async def replay_window(
    log: EventLog,
    since_ms: int | None = None,
    until_ms: int | None = None,
    *,
    subject: str | None = None,
    types: Iterable[EventType | str] | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """The events appended to the log in ``[since_ms, until_ms]`` (log clock), oldest first, as
    wire-form dicts; optionally only one subject's and some types. ``limit`` bounds the entries
    read from the log (before filtering), so a filtered answer may hold fewer."""
    wanted: set[EventType] | None = None
    if types is not None:
        try:
            wanted = {EventType(kind) for kind in types}
        except ValueError as exc:
            raise GraphQueryInputError(f"unknown event type: {exc}") from None
    if subject is not None and (not isinstance(subject, str) or not subject):
        raise GraphQueryInputError("subject must be a non-empty string")
    events = await log.replay(since_ms, until_ms, limit=_limit(limit))
    return [
        event.to_dict()
        for event in events
        if (subject is None or event.subject == subject) and (wanted is None or event.type in wanted)
    ]
