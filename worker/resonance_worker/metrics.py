"""Prometheus metrics of one worker, on a registry of its own (not the global
default), so several workers in one test process never collide."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


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

    def render(self) -> bytes:
        """The exposition text format."""
        return generate_latest(self.registry)
