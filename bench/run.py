"""``make bench``: the load scenarios against Centrifugo v6 and our worker in one run, side by side.

    .venv/bin/python -m bench.run --quick          # the reduced set, a few minutes
    .venv/bin/python -m bench.run                  # the full set recorded in docs/benchmarks.md
    .venv/bin/python -m bench.run --targets centrifugo --quick

Every run starts fresh servers on loopback (so memory figures start from a clean process), runs one bounded
scenario, and stops them. Writes ``bench/results/load-<time>.json`` (every result), a PNG of the whole run and
one small PNG per scenario next to it (the directory is git-ignored), and prints a table with the
worker/Centrifugo ratio of each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.centrifugo.config import Engine
from bench.load import plot, runner
from bench.load.__main__ import default_cpus
from bench.load.scenario import Encoding, Kind, Scenario
from bench.load.servers import CENTRIFUGO_VERSION, stack

PRODUCTS = ("centrifugo", "worker")


def scenarios(quick: bool) -> list[tuple[Scenario, Engine, int]]:
    """(scenario, engine, nodes) in run order; each is run against every product."""
    n = 2000 if quick else 10_000
    secs = 6.0 if quick else 20.0
    common: dict[str, Any] = {"processes": 2 if quick else 4, "settle_s": 3.0, "drain_s": 2.0}
    chat = Scenario(kind=Kind.CHAT, connections=n, room_size=50, duration_s=secs, **common)
    broadcast = Scenario(kind=Kind.BROADCAST, connections=n // 2, room_size=n // 2, duration_s=secs, **common)
    protobuf = {"encoding": Encoding.PROTOBUF}
    plan = [
        (chat, Engine.MEMORY, 1),
        (chat.model_copy(update=protobuf), Engine.MEMORY, 1),
        (broadcast, Engine.MEMORY, 1),
        (broadcast.model_copy(update=protobuf), Engine.MEMORY, 1),
        (
            Scenario(kind=Kind.CROSS_NODE, connections=n // 2, room_size=50, duration_s=secs, **common),
            Engine.REDIS,
            2,
        ),
        (
            Scenario(kind=Kind.RECONNECT_STORM, connections=n // 2, room_size=50, gap_messages=5, **common),
            Engine.REDIS,
            1,
        ),
    ]
    if not quick:
        plan.insert(0, (Scenario(kind=Kind.IDLE, connections=n, room_size=50, **common), Engine.MEMORY, 1))
    return plan


def machine() -> dict[str, Any]:
    def first_line(argv: list[str]) -> str:
        try:
            return (
                subprocess.run(argv, capture_output=True, text=True, timeout=10)
                .stdout.strip()
                .splitlines()[0]
            )
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[:3]
    return {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "centrifugo": CENTRIFUGO_VERSION,
        "go": first_line(["go", "version"]),
        "redis": first_line(["redis-server", "--version"]),
        "load_average_at_start": load,
    }


def run_one(product: str, scenario: Scenario, engine: Engine, nodes: int, nice: int = 0) -> dict[str, Any]:
    server_cpus, client_cpus = default_cpus()
    with (
        tempfile.TemporaryDirectory(prefix="resonance-bench-") as workdir,
        stack(Path(workdir), server_cpus, nice) as s,
    ):
        start = s.start_centrifugo if product == "centrifugo" else s.start_worker
        target = start(engine, nodes=nodes)
        return runner.run(scenario, target, client_cpus=client_cpus, nice=nice)


FIGURES: list[tuple[str, str, str]] = [
    # (section, key, label); latency and memory: lower is better; rates: higher is better.
    ("connect", "connects_per_s", "connects/s"),
    ("idle", "server_kib_per_connection", "server KiB/conn"),
    ("publish", "latency_ms.p50_ms", "p50 ms"),
    ("publish", "latency_ms.p99_ms", "p99 ms"),
    ("publish", "latency_cross_node_ms.p99_ms", "cross-node p99 ms"),
    ("publish", "delivery_ratio", "delivered/expected"),
    ("publish", "delivered_msgs_per_s", "delivered msgs/s"),
    ("publish", "server_cores", "server cores"),
    ("publish", "delivered_msgs_per_server_core_s", "msgs per server core-s"),
    ("storm", "reconnects_per_s", "reconnects/s"),
    ("storm", "recovered_subscriptions", "recovered subs"),
    ("storm", "missing_messages", "missing msgs"),
]


def figure(result: dict[str, Any], section: str, key: str) -> float | None:
    value: Any = result.get(section)
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value if isinstance(value, int | float) else None


def scenario_label(scenario: dict[str, Any]) -> str:
    """``chat`` for JSON (the default encoding), ``chat/protobuf`` otherwise."""
    encoding = scenario.get("encoding", Encoding.JSON.value)
    return scenario["kind"] if encoding == Encoding.JSON.value else f"{scenario['kind']}/{encoding}"


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table: a row per scenario and figure, a column per product, the worker/Centrifugo ratio."""
    lines = ["| scenario | figure | centrifugo | worker | worker / centrifugo |", "|---|---|---|---|---|"]
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for result in results:
        product = result["target"].split("-")[0]
        by_kind.setdefault(scenario_label(result["scenario"]), {})[product] = result
    for kind, pair in by_kind.items():
        n = next(iter(pair.values()))["scenario"]["connections"]
        for section, key, label in FIGURES:
            values = {p: figure(pair[p], section, key) if p in pair else None for p in PRODUCTS}
            if all(v is None for v in values.values()):
                continue
            c, w = values["centrifugo"], values["worker"]
            ratio = f"{w / c:.2f}" if c and w is not None else "—"
            shown = ["—" if v is None else f"{v:g}" for v in (c, w)]
            lines.append(f"| {kind} N={n} | {label} | {shown[0]} | {shown[1]} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the reduced set (a few minutes)")
    parser.add_argument("--targets", nargs="+", choices=PRODUCTS, default=list(PRODUCTS))
    parser.add_argument("--only", nargs="+", choices=[k.value for k in Kind], help="run just these scenarios")
    parser.add_argument(
        "--encodings", nargs="+", choices=[e.value for e in Encoding], default=[e.value for e in Encoding]
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of servers and load (negative needs root; shared machines)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    document: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "nice": args.nice,
        "results": [],
        "failures": [],
    }
    for scenario, engine, nodes in scenarios(args.quick):
        if args.only and scenario.kind.value not in args.only:
            continue
        if scenario.encoding.value not in args.encodings:
            continue
        for product in args.targets:
            label = (
                f"{scenario.kind.value} ({scenario.encoding.value}) on {product}-{engine.value} ×{nodes}, "
                f"N={scenario.connections}"
            )
            print(f"… {label}", file=sys.stderr, flush=True)
            try:
                result = run_one(product, scenario, engine, nodes, args.nice)
            except Exception as exc:  # one failing target must not hide the others' figures
                traceback.print_exc()
                document["failures"].append({"run": label, "error": repr(exc)})
                continue
            document["results"].append(result)
    path = args.out / f"load-{stamp}.json"
    path.write_text(json.dumps(document, indent=2))
    plot.plot_results(document["results"], path.with_suffix(".png"), title=f"load {stamp}")
    figures = plot.plot_scenarios(document["results"], args.out, stem=f"load-{stamp}-")
    print(table(document["results"]))
    for failure in document["failures"]:
        print(f"FAILED: {failure['run']}: {failure['error']}")
    print(f"wrote {path}, {path.with_suffix('.png')} and {len(figures)} scenario figures", file=sys.stderr)
    return 1 if document["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
