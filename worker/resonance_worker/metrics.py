"""Prometheus metrics of one worker, on a registry of its own (not the global
default), so several workers in one test process never collide."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class _EngineCounters(Collector):
    """Figures the engine keeps itself (read at scrape time): ``resonance_redis_oom_total``,
    ``resonance_redis_deadlines_excused_total``, ``resonance_redis_starved_timeouts_total``,
    ``resonance_redis_failovers_total{mode}``, ``resonance_redis_seconds_since_failover`` and
    ``resonance_redis_shards_down``."""

    def __init__(self, engine: Any) -> None:
        self.engine = getattr(engine, "inner", engine)  # the Redis engine under a local fallback

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily(
            "resonance_redis_oom",
            "Writes Redis refused at maxmemory (noeviction: nothing evicted; the call failed).",
            value=getattr(self.engine, "out_of_memory", 0),
        )
        yield CounterMetricFamily(
            "resonance_redis_deadlines_excused",
            "Redis calls whose deadline came while this worker's event loop ran late, and that were given"
            " that lag to finish (a starved worker, not a failing Redis).",
            value=getattr(self.engine, "deadlines_excused", 0),
        )
        yield CounterMetricFamily(
            "resonance_redis_starved_timeouts",
            "Redis calls that timed out while this worker's event loop ran late for half their deadline or"
            " more: failed, not counted against Redis by the circuit breaker.",
            value=getattr(self.engine, "starved_timeouts", 0),
        )
        connector = getattr(self.engine, "connector", None)
        failovers = CounterMetricFamily(
            "resonance_redis_failovers",
            "Redis primary changes this worker saw (a Sentinel failover; a Cluster shard's new primary).",
            labels=["mode"],
        )
        if connector is not None:  # declared without a series on the memory engine (no Redis)
            failovers.add_metric([connector.mode.value], getattr(self.engine, "failovers", 0))
        yield failovers
        last = getattr(self.engine, "last_failover", None)
        if last is not None:
            yield GaugeMetricFamily(
                "resonance_redis_seconds_since_failover",
                "Seconds since the last Redis primary change this worker saw (absent: none yet).",
                value=time.monotonic() - last,
            )
        yield GaugeMetricFamily(
            "resonance_redis_shards_down",
            "Redis Cluster primaries this worker's pub/sub cannot reach now (their channels wait).",
            value=len(getattr(self.engine, "shards_down", ())),
        )


@dataclass
class WorkerMetrics:
    """Every metric the worker exports. Names start with ``resonance_``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.connections = Gauge("resonance_connections", "Open client connections.", registry=r)
        self.ready = Gauge("resonance_ready", "1 when the engine is reachable.", registry=r)
        self.http_requests = Counter(
            "resonance_http_requests", "HTTP requests served.", ["route", "status"], registry=r
        )
        self.commands = Counter(
            "resonance_commands", "Client commands received, by method.", ["method"], registry=r
        )
        self.command_errors = Counter(
            "resonance_command_errors",
            "Error replies sent, by method and code.",
            ["method", "code"],
            registry=r,
        )
        self.disconnects = Counter(
            "resonance_disconnects", "Connections closed by the server, by code.", ["code"], registry=r
        )
        self.protocol_errors = Counter(
            "resonance_protocol_errors",
            "Connections closed for their encoding, by encoding (json, protobuf) and kind (bad_frame: "
            "3501, a frame that is not the protocol; unencodable: 3506, data the encoding cannot carry).",
            ["encoding", "kind"],
            registry=r,
        )
        self.limits = Counter("resonance_limit_violations", "Limits tripped, by kind.", ["kind"], registry=r)
        self.recoveries = Counter(
            "resonance_recoveries",
            "Recovery outcomes (recovered, not_recovered, insufficient_state).",
            ["outcome"],
            registry=r,
        )
        self.publications = Counter(
            "resonance_publications_delivered", "Publication frames queued to local subscribers.", registry=r
        )
        self.delivery_latency = Histogram(
            "resonance_delivery_latency_seconds",
            "From a publication's acceptance to its fan-out on this worker.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )

        self.feature_exposures = Counter(
            "resonance_feature_exposures",
            "Feature-flag values told to connections, by flag and variant (on, off or the variant's "
            "name); bounded by the flag set's limits (100 flags, 16 variants).",
            ["flag", "variant"],
            registry=r,
        )
        self.feature_outcomes = Counter(
            "resonance_feature_outcomes",
            "Outcomes (RPC methods a flag lists in `outcomes`) done by connections told the flag, by "
            "flag, variant and outcome.",
            ["flag", "variant", "outcome"],
            registry=r,
        )
        self.feature_reloads = Counter(
            "resonance_feature_reloads",
            "Feature-flag file reads that changed the set (applied) or were refused (invalid).",
            ["result"],
            registry=r,
        )
        self.feature_flags = Gauge(
            "resonance_feature_flags", "Flags in the feature set in force.", registry=r
        )

    def watch_engine(self, engine: Any) -> None:
        """Export the engine's own counters (any engine; those it does not keep read 0)."""
        self.registry.register(_EngineCounters(engine))

    def render(self) -> bytes:
        """The exposition text format."""
        return generate_latest(self.registry)
