"""Canary analysis: judge the canary against stable on the workers' own ``/metrics``.

Built on :mod:`~resonance_operator.rollout.exposition` (the text format) and
:mod:`~resonance_operator.rollout.scrapes` (increases, rates and quantiles per
revision). Each :class:`MetricCheck` compares canary to stable (absolute and
relative thresholds) and says ``Successful``, ``Failed`` or ``Inconclusive`` (too
little traffic to tell); an :class:`AnalysisRun` accumulates those with a failure
limit, a number of consecutive successes required and an inconclusive limit,
like Argo Rollouts' AnalysisRun. All pure.

To judge a new signal, add a :class:`MetricKind` and its value in
:func:`_value_and_volume` (and the enum to the CRD's ``metrics[].kind``).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence

from pydantic import Field, model_validator

from resonance_operator.api.spec import Model
from resonance_operator.rollout.scrapes import (
    COMMAND_ERRORS,
    COMMANDS,
    CONNECTIONS,
    DELIVERY_LATENCY,
    RECOVERIES,
    THYROID_PAIN,
    Scrape,
    counter_increase,
    counter_rate,
    gauge_mean,
    gauge_sum,
    histogram_increase,
    histogram_quantile,
)


class MetricKind(enum.StrEnum):
    ERROR_RATIO = "errorRatio"
    """Error replies / commands over the window (optionally only some codes)."""
    LATENCY_P99 = "latencyP99"
    """p99 of ``resonance_delivery_latency_seconds`` over the window, in seconds."""
    THYROID_PAIN = "thyroidPain"
    """Mean ``resonance_thyroid_pain`` over the revision's Pods at the second scrape."""
    RECONNECT_RATE = "reconnectRate"
    """Recoveries (resumed sessions) per second per open connection."""
    QUERY = "query"
    """A PromQL expression of your own (``query``), for the Prometheus source only."""


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
    query: str | None = None
    """For ``query``: PromQL giving one number per revision, with ``{{revision}}``, ``{{namespace}}``,
    ``{{cluster}}`` and ``{{window}}`` filled in (``rollout/promql.py``)."""


def default_checks() -> list[MetricCheck]:
    return [
        MetricCheck(
            kind=MetricKind.ERROR_RATIO, max_value=0.05, max_ratio_to_stable=2.0, baseline_floor=0.01
        ),
        MetricCheck(kind=MetricKind.LATENCY_P99, max_value=0.5, max_ratio_to_stable=2.0, baseline_floor=0.01),
        MetricCheck(kind=MetricKind.THYROID_PAIN, max_ratio_to_stable=1.5, baseline_floor=1.0, min_count=0),
    ]


class PrometheusSource(Model):
    """Measure on PromQL against a Prometheus instead of scraping the worker Pods."""

    address: str = Field(pattern=r"^https?://.+")
    """Prometheus' base URL, e.g. ``http://prometheus-operated.monitoring.svc:9090``."""
    window: str = Field("1m", pattern=r"^[0-9]+(ms|s|m|h)$")
    """The range of ``rate``/``increase`` in each query (at least a few scrape intervals)."""


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
    prometheus: PrometheusSource | None = None
    """Set: every check is a PromQL query over ``prometheus.window`` (series of the cluster's
    PodMonitor); unset: the operator scrapes the Pods and compares two scrapes."""

    @model_validator(mode="after")
    def _queries_need_prometheus(self) -> AnalysisSpec:
        for check in self.metrics:
            if check.kind is MetricKind.QUERY and (self.prometheus is None or not check.query):
                raise ValueError("a metric of kind query needs its query and analysis.prometheus")
        return self


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
    if check.kind is MetricKind.QUERY:
        return None, 0.0  # refused without a Prometheus source (AnalysisSpec)
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
    return judge(check, canary, volume, stable, has_pods=has_pods)


def judge(
    check: MetricCheck, canary: float | None, volume: float, stable: float | None, *, has_pods: bool
) -> MetricResult:
    """The verdict on one metric from the canary's value, the data volume behind it and stable's
    value, however they were measured (two scrapes, or PromQL)."""
    if not has_pods or volume < check.min_count:
        return MetricResult(
            check.kind, Phase.INCONCLUSIVE, canary, stable, f"{volume:g} < {check.min_count} needed"
        )
    if canary is None and check.min_count > 0:
        return MetricResult(check.kind, Phase.INCONCLUSIVE, None, stable, "no value (empty or NaN)")
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
class Reading:
    """One check's value for one revision as Prometheus answered it (``None``: empty or NaN)."""

    value: float | None
    volume: float


def measure_readings(
    spec: AnalysisSpec, canary: Sequence[Reading | None], stable: Sequence[Reading | None]
) -> Measurement:
    """All metrics of ``spec`` from PromQL readings, one per check in order (``None``: the query
    failed, which is Inconclusive, as an empty result is in Argo Rollouts)."""
    results = []
    for check, mine, theirs in zip(spec.metrics, canary, stable, strict=True):
        if mine is None:
            results.append(
                MetricResult(check.kind, Phase.INCONCLUSIVE, None, None, "Prometheus did not answer")
            )
            continue
        volume = mine.volume if check.kind is not MetricKind.QUERY else float(mine.value is not None)
        needed = check if check.kind is not MetricKind.QUERY else check.model_copy(update={"min_count": 1})
        results.append(
            judge(needed, mine.value, volume, None if theirs is None else theirs.value, has_pods=True)
        )
    phases = {r.phase for r in results}
    phase = next((p for p in (Phase.FAILED, Phase.INCONCLUSIVE) if p in phases), Phase.SUCCESSFUL)
    return Measurement(phase, tuple(results))


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
