"""One figure for a set of results: latency percentiles, memory per connection, delivered messages per server
core-second, and the server's RSS over time."""

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
    return f"{scenario['kind']}\n{result['target']}\nN={scenario['connections']}"


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
