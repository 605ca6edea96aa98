"""Aggregation of scrapes per revision: what a revision's Pods did between two rounds.

A :class:`Scrape` is one Pod's samples at a time, tagged with its revision.
Counters become increases and rates between two scrapes of the same Pod (a
counter that went down was reset: its new value is the increase), histograms
become bucket increases and a quantile, gauges sum (or average) over Pods. All
pure; ``None`` means "no Pod of that revision to tell from", never zero.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

from resonance_operator.rollout.exposition import Labels, Sample, parse_value

CONNECTIONS = "resonance_connections"
COMMANDS = "resonance_commands_total"
COMMAND_ERRORS = "resonance_command_errors_total"
RECOVERIES = "resonance_recoveries_total"
THYROID_PAIN = "resonance_thyroid_pain"
DELIVERY_LATENCY = "resonance_delivery_latency_seconds"


@dataclasses.dataclass(frozen=True)
class Scrape:
    """One Pod's ``/metrics`` at time ``at``, tagged with the Pod's revision."""

    pod: str
    revision: str
    at: float
    samples: tuple[Sample, ...]

    def values(self, name: str, where: Mapping[str, str | Sequence[str]] | None = None) -> list[Sample]:
        return [s for s in self.samples if s.name == name and _matches(s, where)]


def _matches(sample: Sample, where: Mapping[str, str | Sequence[str]] | None) -> bool:
    if not where:
        return True
    for key, wanted in where.items():
        value = sample.label(key)
        allowed = (wanted,) if isinstance(wanted, str) else tuple(wanted)
        if value not in allowed:
            return False
    return True


def _series(
    scrape: Scrape, name: str, where: Mapping[str, str | Sequence[str]] | None
) -> dict[Labels, float]:
    return {s.labels: s.value for s in scrape.values(name, where)}


def _pairs(before: Iterable[Scrape], after: Iterable[Scrape], revision: str) -> list[tuple[Scrape, Scrape]]:
    """Scrapes of the same Pod of ``revision`` in both rounds, later after earlier."""
    earlier = {s.pod: s for s in before if s.revision == revision}
    return [
        (earlier[s.pod], s)
        for s in after
        if s.revision == revision and s.pod in earlier and s.at > earlier[s.pod].at
    ]


def _increase(old: float, new: float) -> float:
    # A counter only goes down when its process restarted; then it counts from zero.
    return new - old if new >= old else new


def _pod_increase(
    old: Scrape, new: Scrape, name: str, where: Mapping[str, str | Sequence[str]] | None
) -> float:
    """One Pod's increase of every matching series between two of its scrapes."""
    old_series = _series(old, name, where)
    total = 0.0
    for labels, value in _series(new, name, where).items():
        total += _increase(old_series.get(labels, 0.0), value)
    return total


def counter_increase(
    before: Iterable[Scrape],
    after: Iterable[Scrape],
    revision: str,
    name: str,
    where: Mapping[str, str | Sequence[str]] | None = None,
) -> float | None:
    """Sum over the revision's Pods of each series' increase; ``None`` without a Pod scraped twice."""
    pairs = _pairs(before, after, revision)
    if not pairs:
        return None
    total = 0.0
    for old, new in pairs:
        total += _pod_increase(old, new, name, where)
    return total


def counter_rate(
    before: Iterable[Scrape],
    after: Iterable[Scrape],
    revision: str,
    name: str,
    where: Mapping[str, str | Sequence[str]] | None = None,
) -> float | None:
    """Per-second rate summed over the revision's Pods (each Pod over its own interval)."""
    pairs = _pairs(before, after, revision)
    if not pairs:
        return None
    rate = 0.0
    for old, new in pairs:
        rate += _pod_increase(old, new, name, where) / (new.at - old.at)
    return rate


def gauge_sum(scrapes: Iterable[Scrape], revision: str, name: str) -> float | None:
    """Sum of a gauge over the revision's Pods; ``None`` when no Pod reports it."""
    values = [s.value for scrape in scrapes if scrape.revision == revision for s in scrape.values(name)]
    return sum(values) if values else None


def gauge_mean(scrapes: Iterable[Scrape], revision: str, name: str) -> float | None:
    values = [s.value for scrape in scrapes if scrape.revision == revision for s in scrape.values(name)]
    return sum(values) / len(values) if values else None


def histogram_increase(
    before: Iterable[Scrape], after: Iterable[Scrape], revision: str, name: str
) -> dict[float, float] | None:
    """Cumulative bucket increases by upper bound ``le``, summed over the revision's Pods."""
    pairs = _pairs(before, after, revision)
    if not pairs:
        return None
    buckets: dict[float, float] = {}
    for old, new in pairs:
        old_series = _series(old, f"{name}_bucket", None)
        for labels, value in _series(new, f"{name}_bucket", None).items():
            le = parse_value(dict(labels).get("le", "+Inf"), 0)
            buckets[le] = buckets.get(le, 0.0) + _increase(old_series.get(labels, 0.0), value)
    return buckets


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q``-quantile of cumulative buckets, interpolating linearly inside a bucket.

    Same rules as PromQL's ``histogram_quantile``: the first bucket starts at 0,
    and a rank in the ``+Inf`` bucket answers the highest finite bound.

    >>> histogram_quantile(0.5, {0.1: 50, 0.2: 100, math.inf: 100})
    0.1
    >>> histogram_quantile(0.99, {0.1: 50, 0.2: 100, math.inf: 100})
    0.198
    """
    if not 0 <= q <= 1:
        raise ValueError("q must be within 0..1")
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    # The last bucket holds every observation (count >= rank), so the search always finds one.
    index = next(i for i, b in enumerate(bounds) if buckets[b] >= rank)
    bound = bounds[index]
    lower_bound, lower_count = (bounds[index - 1], buckets[bounds[index - 1]]) if index else (0.0, 0.0)
    if math.isinf(bound):
        finite = [b for b in bounds if not math.isinf(b)]
        return finite[-1] if finite else None
    count = buckets[bound]
    if count == lower_count:
        return bound
    return round(lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count), 12)


def connection_share(scrapes: Iterable[Scrape]) -> dict[str, float]:
    """Fraction of open connections on each revision (a weight only steers *new* ones).

    >>> s = lambda pod, rev, n: Scrape(pod, rev, 0.0, (Sample(CONNECTIONS, (), n),))
    >>> connection_share([s("a", "old", 300), s("b", "old", 500), s("c", "new", 200)])
    {'old': 0.8, 'new': 0.2}
    """
    totals: dict[str, float] = {}
    for scrape in scrapes:
        for sample in scrape.values(CONNECTIONS):
            totals[scrape.revision] = totals.get(scrape.revision, 0.0) + sample.value
    grand = sum(totals.values())
    return {rev: (n / grand if grand else 0.0) for rev, n in totals.items()}
