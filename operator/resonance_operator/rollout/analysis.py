"""Canary analysis on the workers' own ``/metrics``.

Three layers, all pure:

1. :func:`parse_exposition` reads the Prometheus text format into samples.
2. Aggregation: a :class:`Scrape` is one Pod's samples at a time, tagged with
   its revision; counters become increases and rates between two scrapes of the
   same Pod (a counter that went down was reset: its new value is the increase),
   histograms become bucket increases and a quantile, gauges sum over Pods.
3. Judgement: each :class:`MetricCheck` compares canary to stable (absolute and
   relative thresholds) and says ``Successful``, ``Failed`` or ``Inconclusive``
   (too little traffic to tell); an :class:`AnalysisRun` accumulates those with
   a failure limit, a number of consecutive successes required and an
   inconclusive limit, like Argo Rollouts' AnalysisRun.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence

from pydantic import Field

from resonance_operator.api.spec import Model

Labels = tuple[tuple[str, str], ...]

CONNECTIONS = "resonance_connections"
COMMANDS = "resonance_commands_total"
COMMAND_ERRORS = "resonance_command_errors_total"
RECOVERIES = "resonance_recoveries_total"
THYROID_PAIN = "resonance_thyroid_pain"
DELIVERY_LATENCY = "resonance_delivery_latency_seconds"


class ExpositionError(ValueError):
    """A line of the text exposition format could not be read."""


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def _parse_value(text: str, line_number: int) -> float:
    special = {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise ExpositionError(f"line {line_number}: bad value {text!r}") from None


def _skip_blanks(line: str, i: int) -> int:
    while i < len(line) and line[i] in " \t":
        i += 1
    return i


def _parse_labels(line: str, start: int, line_number: int) -> tuple[Labels, int]:
    """Labels from just after ``{``; returns them and the index after ``}``."""
    labels: list[tuple[str, str]] = []
    i = start
    while True:
        i = _skip_blanks(line, i)
        if i < len(line) and line[i] == "}":
            return tuple(sorted(labels)), i + 1
        match = _LABEL_NAME.match(line, i)
        if match is None:
            raise ExpositionError(f"line {line_number}: bad label name at column {i + 1}")
        key = match.group()
        # Blanks around "=" are allowed, as in Prometheus' own text parser.
        i = _skip_blanks(line, match.end())
        if line[i : i + 1] != "=":
            raise ExpositionError(f'line {line_number}: expected =" after label {key!r}')
        i = _skip_blanks(line, i + 1)
        if line[i : i + 1] != '"':
            raise ExpositionError(f'line {line_number}: expected =" after label {key!r}')
        i += 1
        chars: list[str] = []
        while True:
            if i >= len(line):
                raise ExpositionError(f"line {line_number}: unterminated value of label {key!r}")
            char = line[i]
            if char == "\\":
                escaped = line[i + 1 : i + 2]
                if escaped not in _ESCAPES:
                    raise ExpositionError(f"line {line_number}: bad escape in label {key!r}")
                chars.append(_ESCAPES[escaped])
                i += 2
            elif char == '"':
                i += 1
                break
            else:
                chars.append(char)
                i += 1
        labels.append((key, "".join(chars)))
        i = _skip_blanks(line, i)
        if i < len(line) and line[i] == ",":
            i += 1
        elif i >= len(line) or line[i] != "}":
            raise ExpositionError(f"line {line_number}: expected , or }} after label {key!r}")


def parse_exposition(text: str) -> tuple[Sample, ...]:
    """Samples of a Prometheus text exposition (version 0.0.4).

    Comments (``# HELP``, ``# TYPE``) and blank lines are skipped; a timestamp
    after the value is accepted and ignored (the scrape time is the caller's).

    >>> parse_exposition('# TYPE x counter\\nx_total{code="1",m="a\\\\"b"} 3\\n')
    (Sample(name='x_total', labels=(('code', '1'), ('m', 'a"b')), value=3.0),)
    """
    samples: list[Sample] = []
    # Lines end with "\n" only: splitlines() would also split inside label values at \x85 or U+2028.
    for line_number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        match = _NAME.match(line)
        if match is None:
            raise ExpositionError(f"line {line_number}: bad metric name")
        name = match.group()
        i = match.end()
        labels: Labels = ()
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i + 1, line_number)
        rest = line[i:].split()
        if not rest or len(rest) > 2 or (i < len(line) and line[i] not in " \t"):
            raise ExpositionError(f"line {line_number}: expected a value after {name!r}")
        samples.append(Sample(name, labels, _parse_value(rest[0], line_number)))
    return tuple(samples)


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
            le = _parse_value(dict(labels).get("le", "+Inf"), 0)
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


class MetricKind(enum.StrEnum):
    ERROR_RATIO = "errorRatio"
    """Error replies / commands over the window (optionally only some codes)."""
    LATENCY_P99 = "latencyP99"
    """p99 of ``resonance_delivery_latency_seconds`` over the window, in seconds."""
    THYROID_PAIN = "thyroidPain"
    """Mean ``resonance_thyroid_pain`` over the revision's Pods at the second scrape."""
    RECONNECT_RATE = "reconnectRate"
    """Recoveries (resumed sessions) per second per open connection."""


class MetricCheck(Model):
    """One metric, its thresholds and how much data it needs to say anything."""

    kind: MetricKind
    max_value: float | None = None
    """Fail when the canary's value is above this."""
    max_ratio_to_stable: float | None = None
    """Fail when the canary's value is above ``stable * ratio`` (stable floored at ``baseline_floor``)."""
    baseline_floor: float = 0.0
    """Stable values under this count as this, so a perfect stable does not fail every blip."""
    min_count: int = 20
    """Commands, observations or connections the canary needs in the window, else Inconclusive."""
    codes: list[str] = Field(default_factory=list)
    """For ``errorRatio``: only these error codes (all when empty)."""


def default_checks() -> list[MetricCheck]:
    return [
        MetricCheck(
            kind=MetricKind.ERROR_RATIO, max_value=0.05, max_ratio_to_stable=2.0, baseline_floor=0.01
        ),
        MetricCheck(kind=MetricKind.LATENCY_P99, max_value=0.5, max_ratio_to_stable=2.0, baseline_floor=0.01),
        MetricCheck(kind=MetricKind.THYROID_PAIN, max_ratio_to_stable=1.5, baseline_floor=1.0, min_count=0),
    ]


class AnalysisSpec(Model):
    """The ``analysis`` of a canary step (or blue-green pre-promotion)."""

    interval_seconds: int = Field(30, ge=1)
    failure_limit: int = Field(0, ge=0)
    """Failed measurements tolerated; one more fails the run."""
    consecutive_successes: int = Field(3, ge=1)
    """Successful measurements in a row that pass the run."""
    inconclusive_limit: int = Field(0, ge=0)
    """Inconclusive measurements tolerated; one more pauses the rollout."""
    max_measurements: int = Field(20, ge=1)
    """Measurements after which a run neither passed nor failed becomes inconclusive."""
    metrics: list[MetricCheck] = Field(default_factory=default_checks)


class Phase(enum.StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


class Verdict(enum.StrEnum):
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


@dataclasses.dataclass(frozen=True)
class MetricResult:
    kind: MetricKind
    phase: Phase
    canary: float | None
    stable: float | None
    message: str


def _value_and_volume(
    check: MetricCheck, before: Sequence[Scrape], after: Sequence[Scrape], revision: str
) -> tuple[float | None, float]:
    """The check's value for one revision and the data volume behind it."""
    if check.kind is MetricKind.ERROR_RATIO:
        commands = counter_increase(before, after, revision, COMMANDS) or 0.0
        where = {"code": check.codes} if check.codes else None
        errors = counter_increase(before, after, revision, COMMAND_ERRORS, where) or 0.0
        return (errors / commands if commands else None), commands
    if check.kind is MetricKind.LATENCY_P99:
        buckets = histogram_increase(before, after, revision, DELIVERY_LATENCY) or {}
        observations = buckets.get(math.inf, 0.0)
        return histogram_quantile(0.99, buckets), observations
    if check.kind is MetricKind.THYROID_PAIN:
        pods = sum(1 for s in after if s.revision == revision and s.values(THYROID_PAIN))
        return gauge_mean(after, revision, THYROID_PAIN), pods
    connections = gauge_sum(after, revision, CONNECTIONS) or 0.0
    rate = counter_rate(before, after, revision, RECOVERIES)
    return (rate / connections if rate is not None and connections else None), connections


def evaluate_metric(
    check: MetricCheck,
    before: Sequence[Scrape],
    after: Sequence[Scrape],
    *,
    canary_revision: str,
    stable_revision: str,
) -> MetricResult:
    """Judge one metric of the canary against stable over the window ``before`` → ``after``."""
    canary, volume = _value_and_volume(check, before, after, canary_revision)
    stable, _ = _value_and_volume(check, before, after, stable_revision)
    has_pods = any(s.revision == canary_revision for s in after)
    if not has_pods or volume < check.min_count or (canary is None and check.min_count > 0):
        return MetricResult(
            check.kind, Phase.INCONCLUSIVE, canary, stable, f"{volume:g} < {check.min_count} needed"
        )
    if canary is None:
        # Enough volume was not required and nothing was measured: nothing went wrong either.
        return MetricResult(check.kind, Phase.SUCCESSFUL, None, stable, "no data, none required")
    if check.max_value is not None and canary > check.max_value:
        return MetricResult(check.kind, Phase.FAILED, canary, stable, f"{canary:g} > max {check.max_value:g}")
    if check.max_ratio_to_stable is not None:
        if stable is None:
            if check.max_value is None:
                return MetricResult(check.kind, Phase.INCONCLUSIVE, canary, None, "no stable baseline")
        else:
            limit = max(stable, check.baseline_floor) * check.max_ratio_to_stable
            if canary > limit:
                message = f"{canary:g} > {check.max_ratio_to_stable:g} x stable {stable:g}"
                return MetricResult(check.kind, Phase.FAILED, canary, stable, message)
    return MetricResult(check.kind, Phase.SUCCESSFUL, canary, stable, "within thresholds")


@dataclasses.dataclass(frozen=True)
class Measurement:
    phase: Phase
    results: tuple[MetricResult, ...]

    @property
    def message(self) -> str:
        return "; ".join(f"{r.kind}: {r.phase} ({r.message})" for r in self.results if r.phase is self.phase)


def measure(
    spec: AnalysisSpec,
    before: Sequence[Scrape],
    after: Sequence[Scrape],
    *,
    canary_revision: str,
    stable_revision: str,
) -> Measurement:
    """All metrics of ``spec``: any Failed fails, else any Inconclusive, else Successful."""
    results = tuple(
        evaluate_metric(
            check, before, after, canary_revision=canary_revision, stable_revision=stable_revision
        )
        for check in spec.metrics
    )
    phases = {r.phase for r in results}
    phase = next((p for p in (Phase.FAILED, Phase.INCONCLUSIVE) if p in phases), Phase.SUCCESSFUL)
    return Measurement(phase, results)


@dataclasses.dataclass(frozen=True)
class AnalysisRun:
    """Counts of one analysis run; small enough to live in the CR's status."""

    started_at: float
    measurements: int = 0
    failures: int = 0
    inconclusive: int = 0
    consecutive_successes: int = 0
    last_measured_at: float | None = None
    last_message: str = ""

    def record(self, measurement: Measurement, now: float) -> AnalysisRun:
        return dataclasses.replace(
            self,
            measurements=self.measurements + 1,
            failures=self.failures + (measurement.phase is Phase.FAILED),
            inconclusive=self.inconclusive + (measurement.phase is Phase.INCONCLUSIVE),
            consecutive_successes=self.consecutive_successes + 1
            if measurement.phase is Phase.SUCCESSFUL
            else 0,
            last_measured_at=now,
            last_message=measurement.message,
        )

    def verdict(self, spec: AnalysisSpec) -> Verdict:
        if self.failures > spec.failure_limit:
            return Verdict.FAILED
        if self.inconclusive > spec.inconclusive_limit:
            return Verdict.INCONCLUSIVE
        if self.consecutive_successes >= spec.consecutive_successes:
            return Verdict.SUCCESSFUL
        if self.measurements >= spec.max_measurements:
            return Verdict.INCONCLUSIVE
        return Verdict.RUNNING

    def next_measurement_in(self, spec: AnalysisSpec, now: float) -> float:
        """Seconds until the next measurement is due (0 when due now)."""
        since = self.started_at if self.last_measured_at is None else self.last_measured_at
        return max(0.0, since + spec.interval_seconds - now)

    def to_status(self) -> dict[str, float | int | str | None]:
        return {
            "startedAt": self.started_at,
            "measurements": self.measurements,
            "failures": self.failures,
            "inconclusive": self.inconclusive,
            "consecutiveSuccesses": self.consecutive_successes,
            "lastMeasuredAt": self.last_measured_at,
            "lastMessage": self.last_message,
        }

    @classmethod
    def from_status(cls, data: Mapping[str, object]) -> AnalysisRun:
        last = data.get("lastMeasuredAt")
        return cls(
            started_at=float(str(data["startedAt"])),
            measurements=int(str(data.get("measurements", 0))),
            failures=int(str(data.get("failures", 0))),
            inconclusive=int(str(data.get("inconclusive", 0))),
            consecutive_successes=int(str(data.get("consecutiveSuccesses", 0))),
            last_measured_at=None if last is None else float(str(last)),
            last_message=str(data.get("lastMessage", "")),
        )
