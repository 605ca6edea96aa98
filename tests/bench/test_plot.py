"""The figures: one small PNG per scenario, the kind docs/benchmarks keeps in git."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.load.plot import plot_ratios, plot_results, plot_scenarios
from bench.run import summary

PNG = b"\x89PNG\r\n\x1a\n"
SMALL_FIGURE_BYTES = 60_000


def _result(kind: str, target: str, **parts: Any) -> dict[str, Any]:
    return {
        "scenario": {"kind": kind, "connections": 100},
        "target": target,
        "nodes": 1,
        "connect": {"connects_per_s": 900.0},
        "idle": {"server_kib_per_connection": 19.0},
        **parts,
    }


def _runs() -> list[dict[str, Any]]:
    publish = {
        "latency_ms": {"p50_ms": 0.7, "p95_ms": 1.3, "p99_ms": 7.5},
        "delivered_msgs_per_server_core_s": 55_000.0,
    }
    storm = {"reconnects_per_s": 500.0, "recovered_subscriptions": 4_900}
    return [
        _result("idle", "centrifugo-memory"),
        _result("idle", "worker-memory"),
        _result("chat", "centrifugo-memory", publish=publish),
        _result("chat", "worker-memory", publish=publish),
        _result("reconnect_storm", "worker-redis", storm=storm),
    ]


def test_one_small_png_per_scenario(tmp_path: Path) -> None:
    written = plot_scenarios(_runs(), tmp_path, stem="run-")
    assert sorted(p.name for p in written) == ["run-chat.png", "run-idle.png", "run-reconnect_storm.png"]
    for path in written:
        data = path.read_bytes()
        assert data[:8] == PNG
        assert len(data) < SMALL_FIGURE_BYTES, (path.name, len(data))


def test_the_whole_run_figure_is_still_drawn(tmp_path: Path) -> None:
    path = plot_results(_runs(), tmp_path / "run.png", title="run")
    assert path.read_bytes()[:8] == PNG


def test_the_summary_figure_draws_the_ratios_small(tmp_path: Path) -> None:
    rows = summary(_runs())
    assert any(r["worker_vs_centrifugo"] == 1.0 for r in rows)
    data = plot_ratios(rows, tmp_path / "summary.png", title="ratios").read_bytes()
    assert data[:8] == PNG
    assert len(data) < SMALL_FIGURE_BYTES
