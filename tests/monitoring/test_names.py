"""The metric-name extraction the live-scrape test (e2e/telemetry/test_metric_names.py) relies on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tests.monitoring import names


def test_exposed_lists_every_series_of_declared_families_even_without_children() -> None:
    registry = CollectorRegistry()
    Counter("resonance_commands", "c", ["method"], registry=registry)
    Gauge("resonance_connections", "g", registry=registry)
    Histogram("resonance_delivery_latency_seconds", "h", registry=registry)
    found = names.exposed(generate_latest(registry).decode())
    assert {
        "resonance_commands_total",
        "resonance_connections",
        "resonance_delivery_latency_seconds_bucket",
        "resonance_delivery_latency_seconds_sum",
        "resonance_delivery_latency_seconds_count",
    } <= found
    assert "resonance_commands" not in found  # PromQL must say resonance_commands_total


def test_every_alert_and_panel_names_resonance_series() -> None:
    rules, panels = names.named_in_rules(), names.named_in_dashboards()
    assert rules["ResonanceDeliveryLatencyHigh"] == {"resonance_delivery_latency_seconds_bucket"}
    assert rules["ResonanceThyroidOverloaded"] == {"resonance_thyroid_state", "resonance_thyroid_pain"}
    assert "resonance-workers: $namespace" in panels
    assert all(panels.values()) and all(rules.values())
