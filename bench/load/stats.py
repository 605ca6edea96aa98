"""Latency statistics — pure functions over samples in milliseconds."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence


def percentile(sorted_samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in [0, 1]) of samples sorted ascending.

    Nearest rank, not interpolation: every reported figure is a latency that was actually observed.
    """
    if not sorted_samples:
        raise ValueError("no samples")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    rank = max(1, math.ceil(fraction * len(sorted_samples)))
    return sorted_samples[rank - 1]


@dataclasses.dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


def summarize(samples: Sequence[float]) -> LatencySummary | None:
    """p50/p95/p99/max/mean of the samples, or ``None`` when there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    return LatencySummary(
        count=len(ordered),
        p50_ms=percentile(ordered, 0.50),
        p95_ms=percentile(ordered, 0.95),
        p99_ms=percentile(ordered, 0.99),
        max_ms=ordered[-1],
        mean_ms=math.fsum(ordered) / len(ordered),
    )


class Reservoir:
    """A uniform sample of at most ``capacity`` values from a stream (Vitter's algorithm R), plus the exact
    count and maximum — so a long run keeps bounded memory while the maximum stays exact."""

    def __init__(self, capacity: int, *, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.samples: list[float] = []
        self.seen = 0
        self.maximum = -math.inf
        self._random = random.Random(seed)

    @classmethod
    def from_values(cls, values: Sequence[float], *, capacity: int = 200_000) -> Reservoir:
        reservoir = cls(capacity)
        for value in values:
            reservoir.add(value)
        return reservoir

    def add(self, value: float) -> None:
        self.seen += 1
        if value > self.maximum:
            self.maximum = value
        if len(self.samples) < self.capacity:
            self.samples.append(value)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.capacity:
            self.samples[slot] = value


def merge_summaries(parts: Sequence[Reservoir]) -> LatencySummary | None:
    """One summary over several reservoirs, weighting each by how many values it saw (so a shard that kept
    a sample of its stream counts as much as it received). The maximum is exact."""
    weighted: list[float] = []
    total_seen = sum(part.seen for part in parts)
    if total_seen == 0:
        return None
    for part in parts:
        if not part.samples:
            continue
        repeat = part.seen / len(part.samples)
        # Exact when no reservoir overflowed (repeat == 1); otherwise an integer-rounded re-weighting.
        copies = max(1, round(repeat))
        for value in part.samples:
            weighted.extend([value] * copies)
    summary = summarize(weighted)
    assert summary is not None
    exact_max = max(part.maximum for part in parts)
    return dataclasses.replace(summary, count=total_seen, max_ms=exact_max)


class PerSecond:
    """Deliveries grouped by the second (since a start) in which they were *sent*: count, maximum and how
    many exceeded a threshold. Shows whether a latency tail is steady or a few stalls."""

    def __init__(self, threshold_ms: float = 100.0) -> None:
        self.threshold_ms = threshold_ms
        self.count: dict[int, int] = {}
        self.maximum: dict[int, float] = {}
        self.over: dict[int, int] = {}

    def add(self, second: int, latency_ms: float) -> None:
        self.count[second] = self.count.get(second, 0) + 1
        if latency_ms > self.maximum.get(second, -math.inf):
            self.maximum[second] = latency_ms
        if latency_ms > self.threshold_ms:
            self.over[second] = self.over.get(second, 0) + 1

    @staticmethod
    def merge(parts: Sequence[PerSecond]) -> list[dict[str, float | int]]:
        """One row per second over every part: ``second``, ``deliveries``, ``max_ms``, ``over_ms``."""
        seconds = sorted({s for part in parts for s in part.count})
        rows: list[dict[str, float | int]] = []
        for second in seconds:
            present = [part for part in parts if second in part.count]
            rows.append(
                {
                    "second": second,
                    "deliveries": sum(part.count[second] for part in present),
                    "max_ms": round(max(part.maximum[second] for part in present), 3),
                    "over_threshold": sum(part.over.get(second, 0) for part in present),
                }
            )
        return rows
