"""The thyroid: the worker's self-regulation.

Every error the worker sees is a *pain signal* (a source and a severity).
Pain per source decays exponentially with a half-life ``h``:
``P(t) = Σ severity_i · 2^(−(t − t_i)/h)``. The sums are kept as a
:class:`PainSnapshot` that merges across workers (decay both to the later time
and add), so a cluster-wide view is one fold over the workers' snapshots.

A state machine reads the total pain ``P`` against the threshold ``T``:

- calm → stressed when ``P ≥ T``; stressed → overloaded when ``P ≥ k·T``;
- down again only when ``P < r·T`` (resp. ``r·k·T``) *and* the state has held
  for ``min_dwell_s`` — the hysteresis band and the dwell keep it from flapping.

Every rise is a *release*: a :class:`ThyroidInsight` (what hurts most, its
trend, since when, a suggested action) and :class:`Adaptations` (a rate-limit
factor, shedding new connections with a retry hint, circuits to open).

One client must not be able to stress the whole worker: a :class:`PainBudget`
caps what any one *identity* (a connection, an IP address, a user) can add to
the pain, and names the identities that flood far beyond their cap so the
wiring can cut them off instead of shedding everyone.

A failing dependency (Redis, Neo4j) must hurt by how long it fails, not by how often clients retry
into it: a :class:`DependencyWatch` counts no call refused by an open circuit, at most one failure
per probe window, and when a probe succeeds again the thyroid drops that pain
(:meth:`Thyroid.dependency_recovered`).

Everything is pure: time is passed in as ``now`` (seconds). See docs/living-core.md. The
circuit breakers the adaptations open are :mod:`resonance_worker.domain.circuit`.

Why one module of about 800 lines: the pain arithmetic (snapshot, ledger, budget) and the state
machine reading it share one formula and one set of units, and docs/living-core.md §1 follows this
file top to bottom; split, each half would only make sense with the other open beside it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class PainSource(StrEnum):
    """What hurt."""

    PROTOCOL_ERROR = "protocol_error"
    LIMIT_HIT = "limit_hit"
    AUTH_FAILURE = "auth_failure"
    ENGINE_TIMEOUT = "engine_timeout"
    NEO4J_FAILURE = "neo4j_failure"
    SERVER_ERROR = "server_error"
    DISCONNECT_STORM = "disconnect_storm"


DEFAULT_SEVERITY: Mapping[PainSource, float] = {
    PainSource.PROTOCOL_ERROR: 1.0,
    PainSource.LIMIT_HIT: 0.5,
    PainSource.AUTH_FAILURE: 1.0,
    PainSource.ENGINE_TIMEOUT: 3.0,
    PainSource.NEO4J_FAILURE: 2.0,
    PainSource.SERVER_ERROR: 5.0,
    PainSource.DISCONNECT_STORM: 5.0,
}
"""Severity of one signal when the caller gives none: a crash hurts more than a refused frame."""

# The dependency whose circuit a source's pain can open.
DEPENDENCY_OF: Mapping[PainSource, str] = {
    PainSource.ENGINE_TIMEOUT: "redis",
    PainSource.NEO4J_FAILURE: "neo4j",
}

ATTRIBUTABLE: frozenset[PainSource] = frozenset(
    {PainSource.PROTOCOL_ERROR, PainSource.LIMIT_HIT, PainSource.AUTH_FAILURE, PainSource.SERVER_ERROR}
)
"""Sources one client can cause, so they are charged to its identities and capped. A slow Redis or
Neo4j, or a storm of disconnects, is the system's pain: it always counts in full, whoever saw it."""

SUGGESTED_ACTION: Mapping[PainSource, str] = {
    PainSource.PROTOCOL_ERROR: (
        "clients send frames the worker refuses: check client SDK versions and the latest client release"
    ),
    PainSource.LIMIT_HIT: (
        "clients keep hitting limits: look for a misbehaving client, or raise the limits if the load is real"
    ),
    PainSource.AUTH_FAILURE: (
        "tokens are refused: check the signing keys and token expiry; a burst may be credential stuffing"
    ),
    PainSource.ENGINE_TIMEOUT: "Redis is slow or unreachable: check its latency, memory and network",
    PainSource.NEO4J_FAILURE: (
        "Neo4j writes fail: check the database; the projector will catch up from the event log"
    ),
    PainSource.SERVER_ERROR: (
        "the worker itself fails: read the logs for the exception; consider rolling back the latest release"
    ),
    PainSource.DISCONNECT_STORM: (
        "many clients dropped at once: check the load balancer, the network and pod restarts"
    ),
}

MAX_SEVERITY = 100.0


class PainSignalError(ValueError):
    """A pain signal with a severity that is not a positive finite number ≤ MAX_SEVERITY."""


def _positive(value: float, name: str) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _decay(level: float, elapsed: float, half_life_s: float) -> float:
    return level * math.exp2(-max(0.0, elapsed) / half_life_s)


# --------------------------------------------------------------------------- snapshot


@dataclass(frozen=True, slots=True)
class PainSnapshot:
    """Decayed pain per source as of ``at``: the mergeable unit of the cluster view.

    ``slow`` decays with the half-life ``h``, ``fast`` with ``h/4``; their
    ratio tells whether pain is rising (recent inflow above the long-run one).
    ``since`` is when each source's pain last rose above the noise floor.
    """

    origin: str
    at: float
    half_life_s: float
    slow: Mapping[PainSource, float]
    fast: Mapping[PainSource, float]
    since: Mapping[PainSource, float]

    def decayed_to(self, now: float) -> PainSnapshot:
        """The same pain as seen at ``now`` (no earlier than ``at``)."""
        now = max(now, self.at)
        fast_half_life = self.half_life_s / FAST_DIVISOR
        return PainSnapshot(
            origin=self.origin,
            at=now,
            half_life_s=self.half_life_s,
            slow={s: _decay(v, now - self.at, self.half_life_s) for s, v in self.slow.items()},
            fast={s: _decay(v, now - self.at, fast_half_life) for s, v in self.fast.items()},
            since=dict(self.since),
        )

    def total(self) -> float:
        """Total pain at ``at``."""
        return sum(self.slow.values())

    def merge(self, other: PainSnapshot, origin: str = "cluster") -> PainSnapshot:
        """Both snapshots decayed to the later time and added; ``since`` is the earlier onset.

        Commutative and associative (up to float rounding), so the order in
        which workers are folded does not matter.
        """
        if not math.isclose(self.half_life_s, other.half_life_s):
            raise ValueError("cannot merge pain snapshots with different half-lives")
        at = max(self.at, other.at)
        left, right = self.decayed_to(at), other.decayed_to(at)
        sources = set(left.slow) | set(right.slow)
        since: dict[PainSource, float] = {}
        for source in set(left.since) | set(right.since):
            onsets = [s.since[source] for s in (left, right) if source in s.since]
            since[source] = min(onsets)
        return PainSnapshot(
            origin=origin,
            at=at,
            half_life_s=self.half_life_s,
            slow={s: left.slow.get(s, 0.0) + right.slow.get(s, 0.0) for s in sources},
            fast={s: left.fast.get(s, 0.0) + right.fast.get(s, 0.0) for s in sources},
            since=since,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what a worker writes to Redis for the cluster view)."""
        return {
            "origin": self.origin,
            "at": self.at,
            "half_life_s": self.half_life_s,
            "slow": {s.value: v for s, v in sorted(self.slow.items())},
            "fast": {s.value: v for s, v in sorted(self.fast.items())},
            "since": {s.value: v for s, v in sorted(self.since.items())},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PainSnapshot:
        """Inverse of :meth:`to_dict`; raises ValueError on anything malformed."""
        try:
            origin = raw["origin"]
            if not isinstance(origin, str):
                raise ValueError("origin must be a string")
            at = float(raw["at"])
            half_life_s = _positive(float(raw["half_life_s"]), "half_life_s")
            parts = [_source_map(raw[name]) for name in ("slow", "fast", "since")]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed pain snapshot: {exc}") from exc
        if not math.isfinite(at):
            raise ValueError("at must be finite")
        for part in parts[:2]:
            if any(v < 0 for v in part.values()):
                raise ValueError("pain levels must be ≥ 0")
        return cls(origin, at, half_life_s, parts[0], parts[1], parts[2])


def _source_map(raw: object) -> dict[PainSource, float]:
    if not isinstance(raw, Mapping):
        raise ValueError("expected an object of source → number")
    result: dict[PainSource, float] = {}
    for key, value in raw.items():
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{key}: must be finite")
        result[PainSource(key)] = number
    return result


FAST_DIVISOR = 4.0
"""The fast accumulator's half-life is h / FAST_DIVISOR."""


class PainLedger:
    """This worker's own pain: decayed sums per source, slow and fast, and onsets."""

    def __init__(self, origin: str, half_life_s: float, noise_floor: float, now: float) -> None:
        self.origin = origin
        self.half_life_s = _positive(half_life_s, "half_life_s")
        self.noise_floor = noise_floor
        self._at = now
        self._slow: dict[PainSource, float] = {}
        self._fast: dict[PainSource, float] = {}
        self._since: dict[PainSource, float] = {}

    def _advance(self, now: float) -> None:
        elapsed = now - self._at
        if elapsed <= 0:
            return
        for source in list(self._slow):
            self._slow[source] = _decay(self._slow[source], elapsed, self.half_life_s)
            self._fast[source] = _decay(self._fast[source], elapsed, self.half_life_s / FAST_DIVISOR)
        self._at = now

    def record(self, source: PainSource, severity: float, now: float) -> None:
        """Add one signal at ``now`` (a ``now`` before the last one counts as the last one)."""
        self._advance(now)
        if self._slow.get(source, 0.0) < self.noise_floor:
            self._since[source] = self._at  # ≥ now: a late signal counts as arriving at the last time
        self._slow[source] = self._slow.get(source, 0.0) + severity
        self._fast[source] = self._fast.get(source, 0.0) + severity

    def relieve(self, source: PainSource, now: float) -> None:
        """Drop ``source``'s pain and onset (its cause is gone: a dependency answers again)."""
        self._advance(now)
        for sums in (self._slow, self._fast, self._since):
            sums.pop(source, None)

    def snapshot(self, now: float) -> PainSnapshot:
        """The ledger as of ``now``; sources decayed below the noise floor lose their onset."""
        self._advance(now)
        since = {s: t for s, t in self._since.items() if self._slow.get(s, 0.0) >= self.noise_floor}
        return PainSnapshot(
            self.origin, self._at, self.half_life_s, dict(self._slow), dict(self._fast), since
        )


# --------------------------------------------------------------------------- per-identity budgets


@dataclass(frozen=True, slots=True)
class Admission:
    """What a :class:`PainBudget` let through of one signal."""

    admitted: float
    """The part of the severity that reaches the pain (0 when an identity's cap is used up)."""
    flooding: frozenset[str]
    """The signal's identities whose offered pain is at or above the flood level."""


class PainBudget:
    """Caps the pain one identity can cause.

    Each identity (an opaque string such as ``ip:10.0.0.7``, ``conn:42``,
    ``user:ann``) has two sums that decay with the pain's half-life ``h``:
    ``admitted`` (what it added to the pain) and ``offered`` (everything it
    caused, uncapped). A signal of severity ``s`` carrying identities ``K``
    admits ``a = min(s, min_k (cap − admitted_k))`` (never below 0) and charges
    ``a`` to every ``admitted_k`` and ``s`` to every ``offered_k``. Because the
    pain and the budget decay alike, the pain still owed to the signals of any
    one identity never exceeds ``cap``: n identities can add at most ``n·cap``.

    An identity is *flooding* while ``offered ≥ flood_factor · cap``; it stops
    flooding by itself as its offered pain decays.
    """

    def __init__(
        self, cap: float, half_life_s: float, *, flood_factor: float, max_identities: int, now: float
    ) -> None:
        self.cap = _positive(cap, "cap")
        self.half_life_s = _positive(half_life_s, "half_life_s")
        self.flood_level = flood_factor * self.cap
        self.max_identities = max_identities
        self.refused = 0.0
        """Severity refused so far (cumulative, not decayed): for a counter metric."""
        self._levels: dict[str, tuple[float, float, float]] = {}  # identity → (admitted, offered, at)
        self._pruned_at = now

    def __len__(self) -> int:
        return len(self._levels)

    def _level(self, identity: str, now: float) -> tuple[float, float]:
        entry = self._levels.get(identity)
        if entry is None:
            return 0.0, 0.0
        admitted, offered, at = entry
        return (
            _decay(admitted, now - at, self.half_life_s),
            _decay(offered, now - at, self.half_life_s),
        )

    def offered(self, identity: str, now: float) -> float:
        """What ``identity`` caused, decayed to ``now`` (uncapped)."""
        return self._level(identity, now)[1]

    def admitted(self, identity: str, now: float) -> float:
        """What ``identity`` added to the pain, decayed to ``now`` (≤ cap)."""
        return self._level(identity, now)[0]

    def charge(self, identities: Iterable[str], severity: float, now: float) -> Admission:
        """Charge one signal to ``identities``; how much of it counts, and who floods."""
        keys = sorted(set(identities))
        if not keys:
            return Admission(severity, frozenset())
        if now - self._pruned_at >= self.half_life_s:
            self.prune(now)
        levels = [self._level(key, now) for key in keys]
        room = min(self.cap - admitted for admitted, _ in levels)
        admitted_now = max(0.0, min(severity, room))
        self.refused += severity - admitted_now
        flooding = set()
        for key, (admitted, offered) in zip(keys, levels, strict=True):
            if key not in self._levels and len(self._levels) >= self.max_identities:
                self._evict(now)
            self._levels.pop(key, None)  # re-inserted last: the dict stays ordered by last use
            self._levels[key] = (admitted + admitted_now, offered + severity, now)
            if offered + severity >= self.flood_level:
                flooding.add(key)
        return Admission(admitted_now, frozenset(flooding))

    def flooding(self, now: float) -> list[str]:
        """Every identity flooding at ``now``."""
        return [key for key in self._levels if self._level(key, now)[1] >= self.flood_level]

    def prune(self, now: float) -> None:
        """Forget identities whose offered pain decayed below 1 % of the cap (they start afresh)."""
        self._pruned_at = now
        floor = 0.01 * self.cap
        for key in [k for k in self._levels if self._level(k, now)[1] < floor]:
            del self._levels[key]

    def _evict(self, now: float) -> None:
        self.prune(now)
        while len(self._levels) >= self.max_identities:
            del self._levels[next(iter(self._levels))]  # the least recently charged


# --------------------------------------------------------------------------- dependency health


@dataclass(slots=True)
class DependencyWatch:
    """Turns a dependency's failed calls into pain by its health over time, not by its call rate.

    A Redis outage is one fact however many clients retry into it, so:

    - a call *refused* because the dependency's circuit is open adds nothing (the open circuit already
      says the dependency is down);
    - a real failure counts at most once per ``window_s`` (the thyroid's probe period): N calls failing
      within one window are one signal;
    - the dependency has *recovered* when a probe succeeds at least ``window_s`` after its last real
      failure, following failures that counted: the thyroid then drops that source's pain.

    Pure: time is passed in as ``now`` (seconds).
    """

    window_s: float
    counted_at: float | None = None
    """When a failure last counted."""
    failed_at: float | None = None
    """The last real failure (counted or not)."""
    failing: bool = False
    """A failure counted since the last recovery."""

    def failed(self, now: float, *, refused: bool = False) -> bool:
        """One failed call at ``now`` (``refused``: by an open circuit); True when it counts as pain."""
        if refused:
            return False
        self.failed_at = now if self.failed_at is None else max(self.failed_at, now)
        if self.counted_at is not None and now - self.counted_at < self.window_s:
            return False
        self.counted_at = now
        self.failing = True
        return True

    def answered(self, now: float) -> bool:
        """A probe succeeded at ``now``; True when that ends an outage (a clean window after failures)."""
        if not self.failing or self.failed_at is None or now - self.failed_at < self.window_s:
            return False
        self.failing = False
        return True


# --------------------------------------------------------------------------- state machine


class ThyroidState(StrEnum):
    CALM = "calm"
    STRESSED = "stressed"
    OVERLOADED = "overloaded"


_RANK = {ThyroidState.CALM: 0, ThyroidState.STRESSED: 1, ThyroidState.OVERLOADED: 2}


class Trend(StrEnum):
    RISING = "rising"
    STEADY = "steady"
    FALLING = "falling"


@dataclass(frozen=True, slots=True)
class ThyroidConfig:
    """Parameters; the wiring builds this from the worker settings."""

    threshold: float = 10.0
    """Pain at which the thyroid becomes stressed (T)."""
    half_life_s: float = 60.0
    overload_factor: float = 3.0
    """Overloaded at k·T."""
    relax_ratio: float = 0.6
    """Leave a state only once pain is below r × its entry level."""
    min_dwell_s: float = 30.0
    """…and only after the state held this long."""
    stressed_rate_factor: float = 0.5
    overloaded_rate_factor: float = 0.25
    circuit_fraction: float = 0.5
    """Open a dependency's circuit when its source's pain reaches this fraction of T (not calm)."""
    retry_min_s: float = 1.0
    retry_max_s: float = 60.0
    max_insights: int = 20
    trend_band: float = 0.25
    """Fast/slow rate ratio beyond 1 ± band is rising/falling."""
    identity_share: float = 0.25
    """One identity (connection, IP, user) adds at most this × T to the pain (its cap)."""
    flood_factor: float = 20.0
    """An identity that offered this × its cap (decayed) is flooding: the wiring cuts it off."""
    max_identities: int = 100_000
    """Identities tracked at once (memory bound); the oldest is forgotten first."""
    dependency_window_s: float = 1.0
    """A dependency's failures count at most once per this window (the wiring: its probe period), so its
    pain follows how long it fails, not how often it is called (:class:`DependencyWatch`)."""
    circuit_only: frozenset[PainSource] = frozenset()
    """Dependency sources (of DEPENDENCY_OF) whose pain only opens their circuit: it is shown, but never
    moves the state, so a failing optional dependency (Neo4j) cannot throttle or shed clients."""

    def __post_init__(self) -> None:
        for name in ("threshold", "half_life_s", "retry_min_s", "retry_max_s", "dependency_window_s"):
            _positive(getattr(self, name), name)
        if not (math.isfinite(self.min_dwell_s) and self.min_dwell_s >= 0):
            raise ValueError("min_dwell_s must be ≥ 0")
        if self.overload_factor <= 1:
            raise ValueError("overload_factor must be > 1")
        if not 0 < self.relax_ratio < 1:
            raise ValueError("relax_ratio must be in (0, 1)")
        for name in ("stressed_rate_factor", "overloaded_rate_factor", "circuit_fraction"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1]")
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s must be ≤ retry_max_s")
        if self.max_insights < 1:
            raise ValueError("max_insights must be ≥ 1")
        if not 0 < self.trend_band < 1:
            raise ValueError("trend_band must be in (0, 1)")
        _positive(self.identity_share, "identity_share")
        if not (math.isfinite(self.flood_factor) and self.flood_factor >= 1):
            raise ValueError("flood_factor must be ≥ 1")
        if self.max_identities < 1:
            raise ValueError("max_identities must be ≥ 1")
        if not set(self.circuit_only) <= set(DEPENDENCY_OF):
            raise ValueError("circuit_only sources must be engine_timeout or neo4j_failure")

    @property
    def identity_cap(self) -> float:
        """The most pain one identity can add (decayed, like the pain itself)."""
        return self.identity_share * self.threshold

    @property
    def overload_level(self) -> float:
        return self.overload_factor * self.threshold

    @property
    def noise_floor(self) -> float:
        """Pain below 5 % of the threshold is noise: it starts no onset."""
        return 0.05 * self.threshold


@dataclass(frozen=True, slots=True)
class Adaptations:
    """What the worker should do while the thyroid is not calm."""

    rate_limit_factor: float = 1.0
    """Multiply every configured rate limit by this (1 = unchanged)."""
    shed_new_connections: bool = False
    retry_after_s: float | None = None
    """The retry hint to give a shed connection."""
    open_circuits: frozenset[str] = frozenset()
    """Dependencies ("redis", "neo4j") whose circuit breakers should be forced open."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate_limit_factor": self.rate_limit_factor,
            "shed_new_connections": self.shed_new_connections,
            "retry_after_s": self.retry_after_s,
            "open_circuits": sorted(self.open_circuits),
        }


CALM_ADAPTATIONS = Adaptations()


@dataclass(frozen=True, slots=True)
class ThyroidInsight:
    """What a release says: what hurts most, its trend, since when, and what to do."""

    at: float
    state: ThyroidState
    pain: float
    threshold: float
    top_source: PainSource
    top_share: float
    """The top source's share of the total pain (0..1)."""
    trend: Trend
    since: float
    suggested_action: str
    adaptations: Adaptations

    @property
    def summary(self) -> str:
        return (
            f"{self.state.value}: pain {self.pain:.1f} (threshold {self.threshold:g}), "
            f"mostly {self.top_source.value} ({self.top_share:.0%}), {self.trend.value} "
            f"since t={self.since:.0f}; {self.suggested_action}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "state": self.state.value,
            "pain": round(self.pain, 4),
            "threshold": self.threshold,
            "top_source": self.top_source.value,
            "top_share": round(self.top_share, 4),
            "trend": self.trend.value,
            "since": self.since,
            "suggested_action": self.suggested_action,
            "adaptations": self.adaptations.to_dict(),
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class ThyroidUpdate:
    """The result of an evaluation: the state, and what changed."""

    state: ThyroidState
    previous: ThyroidState
    pain: float
    adaptations: Adaptations
    released: ThyroidInsight | None = None
    """Set when the state rose (calm → stressed, → overloaded)."""
    flooding: frozenset[str] = frozenset()
    """Identities of the signal just felt that flood (see :class:`PainBudget`)."""

    @property
    def changed(self) -> bool:
        return self.state is not self.previous

    @property
    def relaxed(self) -> bool:
        return _RANK[self.state] < _RANK[self.previous]


def trend_of(snapshot: PainSnapshot, source: PainSource | None, band: float) -> Trend:
    """Rising/steady/falling from the fast and slow accumulators.

    Under a constant inflow ``q`` the slow level settles at ``q·h/ln 2`` and the
    fast one at ``q·(h/4)/ln 2``, so ``ratio = 4·fast/slow`` is 1 at steady
    inflow, above 1 when the recent inflow is higher than the long-run one.
    """
    if source is None:
        slow, fast = sum(snapshot.slow.values()), sum(snapshot.fast.values())
    else:
        slow, fast = snapshot.slow.get(source, 0.0), snapshot.fast.get(source, 0.0)
    if slow <= 0:
        return Trend.STEADY
    ratio = FAST_DIVISOR * fast / slow
    if ratio > 1 + band:
        return Trend.RISING
    if ratio < 1 - band:
        return Trend.FALLING
    return Trend.STEADY


class Thyroid:
    """One worker's thyroid. Feed it pain, evaluate it, read its status.

    The state machine runs on the *view*: this worker's pain plus the latest
    snapshots of its peers (``set_peers``), all decayed to ``now``. A peer that
    stops reporting simply decays away.
    """

    def __init__(self, config: ThyroidConfig, *, origin: str, now: float) -> None:
        self.config = config
        self.origin = origin
        self._ledger = PainLedger(origin, config.half_life_s, config.noise_floor, now)
        self._peers: PainSnapshot | None = None
        self._state = ThyroidState.CALM
        self._entered_at = now
        self._adaptations = CALM_ADAPTATIONS
        self._insights: deque[ThyroidInsight] = deque(maxlen=config.max_insights)
        self._updated_at = now
        self.dependencies = {source: DependencyWatch(config.dependency_window_s) for source in DEPENDENCY_OF}
        """How each dependency's failures become pain (``dependency_failed``, ``dependency_recovered``)."""
        self.budget = PainBudget(
            config.identity_cap,
            config.half_life_s,
            flood_factor=config.flood_factor,
            max_identities=config.max_identities,
            now=now,
        )

    # -- input

    def feel(
        self,
        source: PainSource,
        now: float,
        severity: float | None = None,
        *,
        identities: Iterable[str] = (),
    ) -> ThyroidUpdate:
        """Record one pain signal and re-evaluate. ``severity`` defaults to DEFAULT_SEVERITY[source].

        ``identities`` say who caused it (e.g. ``conn:…``, ``ip:…``, ``user:…``); a source in
        :data:`ATTRIBUTABLE` is then charged to their :class:`PainBudget` and only the admitted part
        counts. Without identities, or for the system's sources, the signal counts in full.
        """
        source = PainSource(source)
        if severity is None:
            severity = DEFAULT_SEVERITY[source]
        if (
            isinstance(severity, bool)
            or not isinstance(severity, int | float)
            or not (math.isfinite(severity) and 0 < severity <= MAX_SEVERITY)
        ):
            raise PainSignalError(f"severity must be in (0, {MAX_SEVERITY:g}], got {severity!r}")
        admission = Admission(float(severity), frozenset())
        if source in ATTRIBUTABLE:
            admission = self.budget.charge(identities, float(severity), now)
        if admission.admitted > 0:
            self._ledger.record(source, admission.admitted, now)
        self._updated_at = max(self._updated_at, now)
        update = self.evaluate(now)
        if admission.flooding:
            update = replace(update, flooding=admission.flooding)
        return update

    def dependency_failed(
        self, source: PainSource, now: float, *, refused: bool = False
    ) -> ThyroidUpdate | None:
        """A call to a dependency (a source of :data:`DEPENDENCY_OF`) failed at ``now``; ``refused``: its
        circuit was open. Felt as ``source`` only when its :class:`DependencyWatch` counts it; None when
        it does not (nothing changed)."""
        if not self.dependencies[PainSource(source)].failed(now, refused=refused):
            return None
        return self.feel(source, now)

    def dependency_recovered(self, source: PainSource, now: float) -> ThyroidUpdate | None:
        """A probe of the dependency behind ``source`` succeeded at ``now``. When that ends an outage
        (:meth:`DependencyWatch.answered`) this worker's pain of ``source`` is dropped and the state may
        step down at once, without waiting out its dwell: the cause is gone, it does not fluctuate. Other
        pain still holds the state by the usual rules. None when it ends no outage."""
        source = PainSource(source)
        if not self.dependencies[source].answered(now):
            return None
        self._ledger.relieve(source, now)
        self._entered_at = min(self._entered_at, now - self.config.min_dwell_s)
        self._updated_at = max(self._updated_at, now)
        return self.evaluate(now)

    def set_peers(self, snapshots: Iterable[PainSnapshot], now: float) -> ThyroidUpdate:
        """Replace the peers' view with ``snapshots`` (own origin ignored) and re-evaluate."""
        merged: PainSnapshot | None = None
        for snapshot in snapshots:
            if snapshot.origin == self.origin:
                continue
            merged = snapshot if merged is None else merged.merge(snapshot, origin="peers")
        self._peers = merged
        self._updated_at = max(self._updated_at, now)
        return self.evaluate(now)

    # -- views

    def snapshot(self, now: float) -> PainSnapshot:
        """This worker's own pain, to publish for the cluster view."""
        return self._ledger.snapshot(now)

    def view(self, now: float) -> PainSnapshot:
        """Own pain plus the peers', as of ``now``."""
        own = self._ledger.snapshot(now)
        if self._peers is None:
            return own
        return own.merge(self._peers, origin=self.origin).decayed_to(now)

    def pain(self, now: float) -> float:
        """Total pain of the view at ``now`` (the ``resonance_thyroid_pain`` gauge)."""
        return self.view(now).total()

    @property
    def state(self) -> ThyroidState:
        return self._state

    @property
    def adaptations(self) -> Adaptations:
        return self._adaptations

    @property
    def insights(self) -> list[ThyroidInsight]:
        """Releases, newest first."""
        return list(reversed(self._insights))

    # -- the state machine

    def _target(self, pain: float, now: float) -> ThyroidState:
        cfg = self.config
        state = self._state
        dwelt = now - self._entered_at >= cfg.min_dwell_s
        if pain >= cfg.overload_level:
            return ThyroidState.OVERLOADED
        if pain >= cfg.threshold:
            # Overloaded steps down to stressed only through the hysteresis band.
            if state is ThyroidState.OVERLOADED and not (
                dwelt and pain < cfg.relax_ratio * cfg.overload_level
            ):
                return state
            return ThyroidState.STRESSED
        if state is ThyroidState.CALM:
            return state
        if not dwelt:
            return state
        if pain < cfg.relax_ratio * cfg.threshold:
            return ThyroidState.CALM
        if state is ThyroidState.OVERLOADED and pain < cfg.relax_ratio * cfg.overload_level:
            return ThyroidState.STRESSED
        return state

    def _driving(self, view: PainSnapshot) -> float:
        """The pain the state machine reads: every source but the circuit-only ones."""
        return sum(v for source, v in view.slow.items() if source not in self.config.circuit_only)

    def _adapt(self, state: ThyroidState, view: PainSnapshot) -> Adaptations:
        cfg = self.config
        circuits = set()
        for source, dependency in DEPENDENCY_OF.items():
            # A dependency's pain opens its circuit while the thyroid hurts (always, if circuit-only).
            if state is ThyroidState.CALM and source not in cfg.circuit_only:
                continue
            level = view.slow.get(source, 0.0)
            opening = cfg.circuit_fraction * cfg.threshold
            already_open = dependency in self._adaptations.open_circuits
            # Same hysteresis as the states: an open circuit closes below r × its opening level.
            if level >= opening or (already_open and level >= cfg.relax_ratio * opening):
                circuits.add(dependency)
        if state is ThyroidState.CALM:
            return Adaptations(open_circuits=frozenset(circuits)) if circuits else CALM_ADAPTATIONS
        if state is ThyroidState.STRESSED:
            return Adaptations(cfg.stressed_rate_factor, False, None, frozenset(circuits))
        pain = self._driving(view)
        # Time for the pain to decay below the overload exit level with no new pain.
        exit_level = cfg.relax_ratio * cfg.overload_level
        retry = cfg.half_life_s * math.log2(pain / exit_level) if pain > exit_level else 0.0
        retry = min(cfg.retry_max_s, max(cfg.retry_min_s, retry))
        return Adaptations(cfg.overloaded_rate_factor, True, round(retry, 3), frozenset(circuits))

    def evaluate(self, now: float) -> ThyroidUpdate:
        """Run the state machine at ``now``; call it on every signal and periodically (e.g. each second)."""
        view = self.view(now)
        pain = self._driving(view)
        previous = self._state
        target = self._target(pain, now)
        released: ThyroidInsight | None = None
        if target is not previous:
            self._state = target
            self._entered_at = now
            self._updated_at = max(self._updated_at, now)
        self._adaptations = self._adapt(target, view)
        if _RANK[target] > _RANK[previous]:
            released = self._release(view, now)
        return ThyroidUpdate(target, previous, pain, self._adaptations, released)

    def _release(self, view: PainSnapshot, now: float) -> ThyroidInsight:
        pain = self._driving(view)
        driving = sorted(s for s in view.slow if s not in self.config.circuit_only)
        top_source = max(driving, key=lambda s: view.slow[s])
        insight = ThyroidInsight(
            at=now,
            state=self._state,
            pain=pain,
            threshold=self.config.threshold,
            top_source=top_source,
            top_share=view.slow[top_source] / pain if pain > 0 else 0.0,
            trend=trend_of(view, top_source, self.config.trend_band),
            since=view.since.get(top_source, now),
            suggested_action=SUGGESTED_ACTION[top_source],
            adaptations=self._adaptations,
        )
        self._insights.append(insight)
        return insight

    def status(self, now: float) -> dict[str, Any]:
        """The body of ``GET /thyroid/status``: exactly pain, threshold, overload_factor (overloaded from
        pain ≥ overload_factor × threshold), state, sources, insights, updated_at.

        A read: it does not run the state machine (``state`` is as of the last
        evaluation), so ``pain`` may sit inside the hysteresis band below the
        threshold while ``state`` is still stressed.
        """
        view = self.view(now)
        return {
            "pain": round(max(0.0, view.total()), 4),
            "threshold": self.config.threshold,
            "overload_factor": self.config.overload_factor,
            "state": self._state.value,
            "sources": {source.value: round(view.slow.get(source, 0.0), 4) for source in PainSource},
            "insights": [insight.to_dict() for insight in self.insights],
            "updated_at": self._updated_at,
        }


# --------------------------------------------------------------------------- disconnect storms


@dataclass(slots=True)
class DisconnectStormDetector:
    """Turns single disconnects into a ``disconnect_storm`` pain signal.

    A storm is at least ``count`` disconnects within ``window_s`` from at least
    ``count`` distinct sources (client addresses; an unknown source counts as
    its own): one address opening and dropping connections in a loop is one
    client misbehaving, not the network failing. It fires once when reached,
    then re-arms once the window has no more than ``count // 2`` sources (its
    own hysteresis).
    """

    count: int = 50
    window_s: float = 10.0
    _times: deque[tuple[float, str | None]] = field(default_factory=deque)
    _per_source: dict[str, int] = field(default_factory=dict)
    _unknown: int = 0
    _armed: bool = True

    def __post_init__(self) -> None:
        if self.count < 2:
            raise ValueError("count must be ≥ 2")
        _positive(self.window_s, "window_s")

    def _sources(self) -> int:
        return len(self._per_source) + self._unknown

    def record(self, now: float, source: str | None = None) -> bool:
        """Record one disconnect (from ``source``); True when this one starts a storm."""
        self._times.append((now, source))
        self._count(source, +1)
        while self._times and self._times[0][0] <= now - self.window_s:
            self._count(self._times.popleft()[1], -1)
        if not self._armed and self._sources() <= self.count // 2:
            self._armed = True
        if self._armed and self._sources() >= self.count:
            self._armed = False
            return True
        return False

    def _count(self, source: str | None, delta: int) -> None:
        if source is None:
            self._unknown += delta
            return
        left = self._per_source.get(source, 0) + delta
        if left:
            self._per_source[source] = left
        else:
            del self._per_source[source]
