"""Exposition parsing, aggregation per revision and canary judgement.

The metrics text comes from the worker's real ``WorkerMetrics`` registry
(prometheus_client's own exposition), driven the way a worker drives it.
"""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from resonance_operator.rollout import analysis, exposition, scrapes
from resonance_operator.rollout.analysis import (
    AnalysisRun,
    AnalysisSpec,
    Measurement,
    MetricCheck,
    MetricKind,
    MetricResult,
    Phase,
    Verdict,
    evaluate_metric,
    measure,
)
from resonance_operator.rollout.exposition import ExpositionError, Sample, parse_exposition
from resonance_operator.rollout.scrapes import (
    Scrape,
    connection_share,
    counter_increase,
    counter_rate,
    gauge_sum,
    histogram_increase,
    histogram_quantile,
)
from resonance_worker.metrics import WorkerMetrics


class Worker:
    """One worker's real metrics registry, plus the thyroid gauge the living core adds."""

    def __init__(self, pod: str, revision: str) -> None:
        self.pod, self.revision = pod, revision
        self.metrics = WorkerMetrics()
        self.pain = Gauge("resonance_thyroid_pain", "Thyroid pain.", registry=self.metrics.registry)

    def serve(self, commands: int, errors: int = 0, code: str = "100", latency: float = 0.004) -> None:
        for _ in range(commands):
            self.metrics.commands.labels("publish").inc()
            self.metrics.delivery_latency.observe(latency)
        for _ in range(errors):
            self.metrics.command_errors.labels("publish", code).inc()

    def scrape(self, at: float) -> Scrape:
        return Scrape(self.pod, self.revision, at, parse_exposition(self.metrics.render().decode()))


def test_docstring_examples() -> None:
    for module in (exposition, scrapes, analysis):
        assert doctest.testmod(module).failed == 0


def test_parses_the_workers_real_exposition() -> None:
    worker = Worker("w-0", "r1")
    worker.serve(3, errors=1, code="103")
    worker.metrics.connections.set(42)
    samples = parse_exposition(worker.metrics.render().decode())
    by_name = {(s.name, s.labels): s.value for s in samples}
    assert by_name[("resonance_connections", ())] == 42
    assert by_name[("resonance_commands_total", (("method", "publish"),))] == 3
    assert by_name[("resonance_command_errors_total", (("code", "103"), ("method", "publish")))] == 1
    assert by_name[("resonance_delivery_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert by_name[("resonance_delivery_latency_seconds_count", ())] == 3


def test_parser_handles_escapes_specials_timestamps_and_spacing() -> None:
    text = "\n".join(
        [
            "# HELP odd a metric",
            "",
            'odd{path="C:\\\\dir",quote="say \\"hi\\"",nl="a\\nb",} 1.5e3 1700000000000',
            "odd_inf +Inf",
            'odd_ninf{ a = "x" } -Inf',
            "odd_nan NaN",
            "plain 7",
        ]
    )
    samples = parse_exposition(text)
    assert samples[0] == Sample("odd", (("nl", "a\nb"), ("path", "C:\\dir"), ("quote", 'say "hi"')), 1500.0)
    assert samples[1].value == math.inf
    assert samples[2].labels == (("a", "x"),) and samples[2].value == -math.inf
    assert math.isnan(samples[3].value)
    assert samples[4].label("missing") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("9bad 1", "bad metric name"),
        ('m{9="x"} 1', "bad label name"),
        ("m{a=x} 1", 'expected ="'),
        ('m{a "x"} 1', 'expected ="'),
        ('m{a="x} 1', "unterminated"),
        ('m{a="\\q"} 1', "bad escape"),
        ('m{a="x" b="y"} 1', "expected , or }"),
        ("m", "expected a value"),
        ("m 1 2 3", "expected a value"),
        ('m{a="x"}1', "expected a value"),
        ("m one", "bad value"),
    ],
)
def test_parser_errors_name_the_line(text: str, problem: str) -> None:
    with pytest.raises(ExpositionError, match=problem) as error:
        parse_exposition("# ok\n" + text)
    assert "line 2" in str(error.value)


def test_counters_sum_over_pods_rates_per_pod_interval_and_resets() -> None:
    a, b, c = Worker("a", "stable"), Worker("b", "stable"), Worker("c", "canary")
    a.serve(10)
    b.serve(4)
    before = [a.scrape(0.0), b.scrape(1.0), c.scrape(0.0)]
    a.serve(30)
    b.serve(20)
    after = [a.scrape(10.0), b.scrape(5.0), c.scrape(10.0), Worker("new", "stable").scrape(10.0)]
    assert counter_increase(before, after, "stable", scrapes.COMMANDS) == 50
    assert counter_rate(before, after, "stable", scrapes.COMMANDS) == pytest.approx(30 / 10 + 20 / 4)
    assert counter_increase(before, after, "canary", scrapes.COMMANDS) == 0
    assert counter_increase(before, after, "other", scrapes.COMMANDS) is None
    assert counter_rate(before, after, "other", scrapes.COMMANDS) is None
    # A restarted worker's counter starts again from zero: its value is the increase.
    restarted = Worker("a", "stable")
    restarted.serve(6)
    assert counter_increase([a.scrape(0.0)], [restarted.scrape(5.0)], "stable", scrapes.COMMANDS) == 6


def test_histogram_increase_and_p99() -> None:
    fast, slow = Worker("f", "r"), Worker("s", "r")
    before = [fast.scrape(0.0), slow.scrape(0.0)]
    fast.serve(99, latency=0.004)
    slow.serve(1, latency=2.0)
    buckets = histogram_increase(
        before, [fast.scrape(30.0), slow.scrape(30.0)], "r", scrapes.DELIVERY_LATENCY
    )
    assert buckets is not None
    assert buckets[0.005] == 99 and buckets[math.inf] == 100
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.005)
    assert histogram_quantile(1.0, buckets) == pytest.approx(2.5)
    assert histogram_increase(before, [], "r", scrapes.DELIVERY_LATENCY) is None


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, {0.1: 50.0, 0.2: 100.0, math.inf: 100.0}, 0.1),
        (0.75, {0.1: 50.0, 0.2: 100.0, math.inf: 100.0}, 0.15),
        (0.99, {0.1: 0.0, 0.2: 0.0, math.inf: 10.0}, 0.2),
        (0.99, {math.inf: 10.0}, None),
        (0.5, {0.1: 0.0, math.inf: 0.0}, None),
        (0.0, {0.1: 0.0, 0.2: 5.0, math.inf: 5.0}, 0.1),
        (0.5, {}, None),
    ],
)
def test_histogram_quantile_table(q: float, buckets: dict[float, float], expected: float | None) -> None:
    assert histogram_quantile(q, buckets) == (expected if expected is None else pytest.approx(expected))


def test_quantile_out_of_range() -> None:
    with pytest.raises(ValueError, match="q must"):
        histogram_quantile(1.5, {1.0: 1.0})


def test_connection_share_reports_open_sockets_per_revision() -> None:
    old, new = Worker("o", "old"), Worker("n", "new")
    old.metrics.connections.set(900)
    new.metrics.connections.set(100)
    assert connection_share([old.scrape(0.0), new.scrape(0.0)]) == {"old": 0.9, "new": 0.1}
    old.metrics.connections.set(0)
    new.metrics.connections.set(0)
    assert connection_share([old.scrape(0.0), new.scrape(0.0)]) == {"old": 0.0, "new": 0.0}
    assert gauge_sum([old.scrape(0.0)], "new", scrapes.CONNECTIONS) is None


def window(
    canary_errors: int, *, stable_errors: int = 1, commands: int = 200, latency: float = 0.004
) -> tuple[list[Scrape], list[Scrape]]:
    """Two scrapes of two stable Pods and one canary Pod, 30 s apart."""
    stable = [Worker("s0", "stable"), Worker("s1", "stable")]
    canary = Worker("c0", "canary")
    pods = [*stable, canary]
    before = [p.scrape(0.0) for p in pods]
    for pod in stable:
        pod.serve(commands, errors=stable_errors)
        pod.pain.set(2.0)
        pod.metrics.connections.set(500)
    canary.serve(commands, errors=canary_errors, latency=latency, code="109")
    canary.pain.set(2.5)
    canary.metrics.connections.set(100)
    return before, [p.scrape(30.0) for p in pods]


def judge(check: MetricCheck, before: list[Scrape], after: list[Scrape]) -> MetricResult:
    return evaluate_metric(check, before, after, canary_revision="canary", stable_revision="stable")


def test_error_ratio_absolute_and_relative_thresholds() -> None:
    check = MetricCheck(
        kind=MetricKind.ERROR_RATIO, max_value=0.05, max_ratio_to_stable=2.0, baseline_floor=0.01
    )
    assert judge(check, *window(2)).phase is Phase.SUCCESSFUL  # 1 % vs 0.5 % → under the 1 % floor x 2
    result = judge(check, *window(5))  # 2.5 % > 2 x max(0.5 %, 1 %)
    assert result.phase is Phase.FAILED and "x stable" in result.message
    assert judge(check, *window(20)).phase is Phase.FAILED  # 10 % > 5 % absolute
    only_other_codes = check.model_copy(update={"codes": ["101"]})
    assert judge(only_other_codes, *window(20)).phase is Phase.SUCCESSFUL
    only_the_failing_code = check.model_copy(update={"codes": ["109", "110"]})
    assert judge(only_the_failing_code, *window(20)).phase is Phase.FAILED


def test_too_little_traffic_is_inconclusive() -> None:
    check = MetricCheck(kind=MetricKind.ERROR_RATIO, max_value=0.05, min_count=1000)
    result = judge(check, *window(0))
    assert result.phase is Phase.INCONCLUSIVE and "1000 needed" in result.message
    before, after = window(0)
    no_canary = [s for s in after if s.revision != "canary"]
    assert (
        judge(MetricCheck(kind=MetricKind.ERROR_RATIO, min_count=0), before, no_canary).phase
        is Phase.INCONCLUSIVE
    )


def test_relative_check_without_stable_is_inconclusive_unless_an_absolute_limit_exists() -> None:
    before, after = window(0)
    canary_only = [s for s in after if s.revision == "canary"]
    relative = MetricCheck(kind=MetricKind.LATENCY_P99, max_ratio_to_stable=2.0)
    assert judge(relative, before, canary_only).phase is Phase.INCONCLUSIVE
    both = relative.model_copy(update={"max_value": 1.0})
    assert judge(both, before, canary_only).phase is Phase.SUCCESSFUL


def test_latency_thyroid_and_reconnect_checks() -> None:
    slow = window(0, latency=0.8)
    p99 = MetricCheck(kind=MetricKind.LATENCY_P99, max_value=0.5)
    assert judge(p99, *slow).phase is Phase.FAILED
    assert judge(p99, *window(0)).phase is Phase.SUCCESSFUL
    pain = MetricCheck(kind=MetricKind.THYROID_PAIN, max_ratio_to_stable=1.1, min_count=1)
    failed = judge(pain, *window(0))
    assert failed.phase is Phase.FAILED and (failed.canary, failed.stable) == (2.5, 2.0)
    reconnects = MetricCheck(kind=MetricKind.RECONNECT_RATE, max_value=0.001, min_count=50)
    assert judge(reconnects, *window(0)).phase is Phase.SUCCESSFUL


def test_reconnect_rate_per_connection() -> None:
    canary = Worker("c", "canary")
    canary.metrics.connections.set(100)
    before = [canary.scrape(0.0)]
    for _ in range(30):
        canary.metrics.recoveries.labels("recovered").inc()
    after = [canary.scrape(10.0)]
    check = MetricCheck(kind=MetricKind.RECONNECT_RATE, max_value=0.01, min_count=50)
    result = judge(check, before, after)
    assert result.phase is Phase.FAILED and result.canary == pytest.approx(0.03)


def test_a_check_needing_no_data_passes_when_there_is_none() -> None:
    canary = Worker("c", "canary")  # its thyroid gauge reads 0.0 until set
    scrape = Scrape("c", "canary", 1.0, ())
    check = MetricCheck(kind=MetricKind.THYROID_PAIN, max_value=1.0, min_count=0)
    assert judge(check, [], [scrape]).phase is Phase.SUCCESSFUL
    assert judge(check, [], [canary.scrape(1.0)]).phase is Phase.SUCCESSFUL


def test_measure_combines_metrics_failed_over_inconclusive_over_successful() -> None:
    spec = AnalysisSpec()
    assert (
        measure(spec, *window(0), canary_revision="canary", stable_revision="stable").phase
        is Phase.SUCCESSFUL
    )
    bad = measure(spec, *window(30), canary_revision="canary", stable_revision="stable")
    assert bad.phase is Phase.FAILED and bad.message.startswith("errorRatio: Failed")
    quiet = measure(spec, *window(0, commands=3), canary_revision="canary", stable_revision="stable")
    assert quiet.phase is Phase.INCONCLUSIVE


def run_of(*phases: Phase) -> AnalysisRun:
    run = AnalysisRun(started_at=0.0)
    for i, phase in enumerate(phases, start=1):
        run = run.record(Measurement(phase, ()), now=10.0 * i)
    return run


@pytest.mark.parametrize(
    ("phases", "limits", "verdict"),
    [
        ((), {}, Verdict.RUNNING),
        ((Phase.SUCCESSFUL,) * 3, {}, Verdict.SUCCESSFUL),
        ((Phase.SUCCESSFUL, Phase.SUCCESSFUL), {}, Verdict.RUNNING),
        ((Phase.FAILED,), {}, Verdict.FAILED),
        ((Phase.FAILED,), {"failure_limit": 1}, Verdict.RUNNING),
        ((Phase.FAILED, Phase.SUCCESSFUL, Phase.FAILED), {"failure_limit": 1}, Verdict.FAILED),
        ((Phase.INCONCLUSIVE,), {}, Verdict.INCONCLUSIVE),
        ((Phase.INCONCLUSIVE, Phase.SUCCESSFUL), {"inconclusive_limit": 1}, Verdict.RUNNING),
        (
            (Phase.SUCCESSFUL, Phase.FAILED, Phase.SUCCESSFUL),
            {"failure_limit": 5, "max_measurements": 3},
            Verdict.INCONCLUSIVE,
        ),
    ],
)
def test_run_verdicts(phases: tuple[Phase, ...], limits: dict[str, int], verdict: Verdict) -> None:
    assert run_of(*phases).verdict(AnalysisSpec(**limits)) is verdict


def test_run_timing_and_status_round_trip() -> None:
    spec = AnalysisSpec(interval_seconds=30)
    fresh = AnalysisRun(started_at=100.0)
    assert fresh.next_measurement_in(spec, 110.0) == 20.0
    assert fresh.next_measurement_in(spec, 200.0) == 0.0
    run = fresh.record(Measurement(Phase.SUCCESSFUL, ()), 130.0)
    assert run.next_measurement_in(spec, 140.0) == 20.0
    assert AnalysisRun.from_status(run.to_status()) == run
    assert AnalysisRun.from_status(fresh.to_status()) == fresh


def test_analysis_spec_reads_camel_case_and_refuses_unknown_fields() -> None:
    spec = AnalysisSpec.model_validate(
        {"intervalSeconds": 10, "failureLimit": 2, "metrics": [{"kind": "latencyP99", "maxValue": 0.2}]}
    )
    assert (spec.interval_seconds, spec.failure_limit, spec.metrics[0].max_value) == (10, 2, 0.2)
    with pytest.raises(ValueError, match="extra"):
        AnalysisSpec.model_validate({"bogus": 1})


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.text(st.characters(codec="utf-8"), max_size=20), st.floats(-1e9, 1e9)),
        min_size=1,
        max_size=5,
        unique_by=lambda pair: pair[0],
    )
)
def test_round_trip_through_prometheus_clients_own_renderer(values: list[tuple[str, float]]) -> None:
    """Any label text (quotes, backslashes, newlines, unicode) comes back exactly as set."""
    registry = CollectorRegistry()
    gauge = Gauge("round_trip", "Round trip.", ["text"], registry=registry)
    for text, value in values:
        gauge.labels(text).set(value)
    parsed = {s.label("text"): s.value for s in parse_exposition(generate_latest(registry).decode())}
    assert parsed == dict(values)
