"""Figures for a set of results.

- :func:`plot_results`: one large 2×2 figure for a whole run (latency percentiles, memory per connection,
  delivered messages per server core-second, the server's RSS over time), written next to the run's JSON.
- :func:`plot_scenarios`: one small figure per scenario (a few tens of KB), the kind that is committed to
  ``docs/benchmarks/``: the run's raw JSON stays out of git.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TICKS: dict[str, Any] = {"fontsize": 6, "rotation": 20, "ha": "right"}


def _label(result: dict[str, Any]) -> str:
    scenario = result["scenario"]
    encoding = scenario.get("encoding", "json")
    kind = scenario["kind"] if encoding == "json" else f"{scenario['kind']}/{encoding}"
    return f"{kind}\n{result['target']}\nN={scenario['connections']}"


def plot_results(results: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Write a 2×2 panel figure (format from the suffix: .png or .svg)."""
    figure, axes = plt.subplots(2, 2, figsize=(16, 10))
    latency, memory, throughput, timeline = axes[0][0], axes[0][1], axes[1][0], axes[1][1]

    with_latency = [r for r in results if (r.get("publish") or {}).get("latency_ms")]
    labels = [_label(r) for r in with_latency]
    for offset, key in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        values = [r["publish"]["latency_ms"][key] for r in with_latency]
        positions = [i + (offset - 1) * 0.27 for i in range(len(values))]
        latency.bar(positions, values, width=0.27, label=key.removesuffix("_ms"))
    latency.set_xticks(range(len(labels)), labels, **TICKS)
    latency.set_ylabel("publish → receive latency, ms")
    latency.set_yscale("log")
    latency.axhline(100, color="red", linestyle="--", linewidth=1, label="100 ms bar")
    latency.legend(fontsize=8)

    with_idle = [r for r in results if r.get("idle")]
    memory.bar(
        range(len(with_idle)), [r["idle"]["server_kib_per_connection"] for r in with_idle], color="tab:green"
    )
    memory.set_xticks(
        range(len(with_idle)), [_label(r) for r in with_idle], fontsize=6, rotation=20, ha="right"
    )
    memory.set_ylabel("server RSS per connection, KiB")
    memory.axhline(20, color="red", linestyle="--", linewidth=1)

    with_rate = [r for r in results if (r.get("publish") or {}).get("delivered_msgs_per_server_core_s")]
    throughput.bar(
        range(len(with_rate)),
        [r["publish"]["delivered_msgs_per_server_core_s"] for r in with_rate],
        color="tab:purple",
    )
    throughput.set_xticks(
        range(len(with_rate)), [_label(r) for r in with_rate], fontsize=6, rotation=20, ha="right"
    )
    throughput.set_ylabel("delivered msgs per server CPU-second")

    for result in results:
        rows = result.get("timeline") or []
        if rows:
            timeline.plot(
                [r["t_s"] for r in rows],
                [r["rss_mib"] for r in rows],
                label=_label(result).replace("\n", " "),
            )
    timeline.set_xlabel("seconds since start")
    timeline.set_ylabel("server RSS, MiB")
    if any(result.get("timeline") for result in results):
        timeline.legend(fontsize=6)

    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


SMALL_FIGURE_INCHES = (6.4, 2.6)
SMALL_FIGURE_DPI = 80


def _target(result: dict[str, Any]) -> str:
    nodes = result.get("nodes") or 1
    return f"{result['target']}" + (f" ×{nodes}" if nodes > 1 else "")


def plot_scenarios(results: Sequence[dict[str, Any]], directory: Path, *, stem: str = "") -> list[Path]:
    """Write one small PNG per scenario kind, or plan entry of its own name (``<stem><kind>.png``; the
    ``plan`` of a result from ``bench.run``): the targets side by side, with the
    figure that scenario is judged by - latency percentiles and messages per server core for traffic,
    memory per connection for idle, recovered reconnects for a storm. Returns the paths written."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_kind.setdefault(result.get("plan", result["scenario"]["kind"]), []).append(result)
    written = []
    for kind, group in by_kind.items():
        figure, (left, right) = plt.subplots(1, 2, figsize=SMALL_FIGURE_INCHES)
        names = [_target(r) for r in group]
        positions = range(len(group))
        latencies = [(r.get("publish") or {}).get("latency_ms") for r in group]
        storms = [r.get("storm") for r in group]
        if any(latencies):
            for offset, key in enumerate(("p50_ms", "p95_ms", "p99_ms")):
                values = [(lat or {}).get(key, 0.0) for lat in latencies]
                left.bar([i + (offset - 1) * 0.27 for i in positions], values, width=0.27, label=key[:-3])
            left.set_yscale("log")
            left.set_ylabel("delivery latency, ms", fontsize=7)
            left.legend(fontsize=6)
            rates = [(r.get("publish") or {}).get("delivered_msgs_per_server_core_s", 0.0) for r in group]
            right.bar(positions, rates, color="tab:purple")
            right.set_ylabel("msgs per server core-second", fontsize=7)
        elif any(storms):
            left.bar(positions, [(s or {}).get("reconnects_per_s", 0.0) for s in storms], color="tab:orange")
            left.set_ylabel("reconnects per second", fontsize=7)
            right.bar(
                positions, [(s or {}).get("recovered_subscriptions", 0) for s in storms], color="tab:green"
            )
            right.set_ylabel("subscriptions recovered", fontsize=7)
        else:
            memory = [(r.get("idle") or {}).get("server_kib_per_connection", 0.0) for r in group]
            left.bar(positions, memory, color="tab:green")
            left.set_ylabel("server KiB per connection", fontsize=7)
            connects = [(r.get("connect") or {}).get("connects_per_s", 0.0) for r in group]
            right.bar(positions, connects, color="tab:orange")
            right.set_ylabel("connects per second", fontsize=7)
        for axis in (left, right):
            axis.set_xticks(list(positions), names, fontsize=6, rotation=15, ha="right")
            axis.tick_params(axis="y", labelsize=6)
        connections = group[0]["scenario"]["connections"]
        figure.suptitle(f"{kind}, N={connections}", fontsize=8)
        figure.tight_layout()
        path = directory / f"{stem}{kind}.png"
        figure.savefig(path, dpi=SMALL_FIGURE_DPI)
        plt.close(figure)
        written.append(path)
    return written


def plot_ratios(rows: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """One small horizontal bar chart of the worker/Centrifugo ratio of every (scenario, figure) row of
    ``bench.run.summary`` (and worker/base when the run had a baseline worker); 1.0 is parity."""
    shown = [r for r in rows if r.get("worker_vs_centrifugo") is not None]
    figure, axis = plt.subplots(figsize=(8, 0.22 * max(len(shown), 4) + 1))
    labels = [f"{r['scenario']} N={r['connections']}: {r['figure']}" for r in shown]
    positions = range(len(shown))
    axis.barh([p + 0.2 for p in positions], [r["worker_vs_centrifugo"] for r in shown], height=0.4,
              label="worker / centrifugo")  # fmt: skip
    if any(r.get("worker_vs_base") is not None for r in shown):
        axis.barh([p - 0.2 for p in positions], [r.get("worker_vs_base") or 0 for r in shown], height=0.4,
                  label="worker / base ref")  # fmt: skip
    axis.axvline(1.0, color="black", linewidth=0.8)
    axis.set_yticks(list(positions), labels, fontsize=6)
    axis.invert_yaxis()
    axis.set_xlabel("ratio (rates: higher is better; ms, µs, KiB: lower is better)", fontsize=7)
    axis.legend(fontsize=6)
    axis.set_title(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
