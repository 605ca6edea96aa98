"""``make bench``: the load scenarios against Centrifugo v6 and our worker in one run, side by side.

    .venv/bin/python -m bench.run --quick          # the reduced set, a few minutes
    .venv/bin/python -m bench.run                  # the full set recorded in docs/benchmarks.md
    .venv/bin/python -m bench.run --targets centrifugo --quick
    .venv/bin/python -m bench.run --quick --baseline-ref main   # also the worker as of `main` (before/after)

Every run starts fresh servers on loopback (so memory figures start from a clean process), runs one bounded
scenario, and stops them. Writes ``bench/results/load-<time>.json`` (every result), a PNG of the whole run and
one small PNG per scenario next to it, ``summary-<time>.json`` (the figures and ratios only, with the
machine's load average around each run) and ``summary-<time>.png`` (the ratios); the directory is
git-ignored. Prints a table with the worker/Centrifugo ratio of each figure (and worker/base with
``--baseline-ref``: the worker of another commit, checked out to a temporary directory, in the same run).

Server CPU is user + system time of the server processes from /proc (not wall time); the machine is shared,
so compare ratios from one run, never absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from bench.centrifugo.config import Engine
from bench.load import plot, runner
from bench.load.__main__ import default_cpus
from bench.load.scenario import Encoding, Kind, Scenario
from bench.load.servers import CENTRIFUGO_VERSION, REPO, stack

PRODUCTS = ("centrifugo", "worker")
BASE = "base"  # the worker of --baseline-ref


class Planned(NamedTuple):
    """One scenario of the plan, run against every product."""

    scenario: Scenario
    engine: Engine
    nodes: int
    processes: int = 1
    """Worker processes per node (``RESONANCE_PROCESSES``, sharing its port); Centrifugo is always one
    process per node (Go spreads its work over the cores it is given)."""

    @property
    def name(self) -> str:
        """What ``--only`` selects and the summary groups by: the scenario's kind, or
        ``chat_redis_processes`` for chat on the Redis engine over several worker processes."""
        if self.processes > 1:
            return f"{self.scenario.kind.value}_redis_processes"
        return self.scenario.kind.value


MULTI_PROCESS = "chat_redis_processes"


def scenarios(quick: bool, connections: int | None = None) -> list[Planned]:
    """The plan in run order; each is run against every product. ``connections``: the plan's size in
    place of 2,000 (quick) or 10,000 (the cross-node and reconnect-storm scenarios take half)."""
    n = connections or (2000 if quick else 10_000)
    secs = 6.0 if quick else 20.0
    common: dict[str, Any] = {"processes": 2 if quick else 4, "settle_s": 3.0, "drain_s": 2.0}
    chat = Scenario(kind=Kind.CHAT, connections=n, room_size=50, duration_s=secs, **common)
    broadcast = Scenario(kind=Kind.BROADCAST, connections=n // 2, room_size=n // 2, duration_s=secs, **common)
    protobuf = {"encoding": Encoding.PROTOBUF}
    plan = [
        Planned(chat, Engine.MEMORY, 1),
        Planned(chat.model_copy(update=protobuf), Engine.MEMORY, 1),
        Planned(
            Scenario(kind=Kind.CROSS_NODE, connections=n // 2, room_size=50, duration_s=secs, **common),
            Engine.REDIS,
            2,
        ),
        Planned(
            Scenario(kind=Kind.RECONNECT_STORM, connections=n // 2, room_size=50, gap_messages=5, **common),
            Engine.REDIS,
            1,
        ),
        # The configuration the operator deploys: the Redis engine, one node of two worker processes
        # (issue 19: 10,000 connections, every publication delivered, p99 against Centrifugo's on Redis).
        Planned(chat, Engine.REDIS, 1, processes=2),
    ]
    if not quick:
        plan.insert(
            0, Planned(Scenario(kind=Kind.IDLE, connections=n, room_size=50, **common), Engine.MEMORY, 1)
        )
        plan[3:3] = [
            Planned(broadcast, Engine.MEMORY, 1),
            Planned(broadcast.model_copy(update=protobuf), Engine.MEMORY, 1),
        ]
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


def load_average() -> list[float]:
    with open("/proc/loadavg") as loadavg:
        return [float(x) for x in loadavg.read().split()[:3]]


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The tree of ``ref`` (``git archive``) in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="resonance-bench-base-") as directory:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref, "worker"], check=True, capture_output=True, timeout=120
        ).stdout
        subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True, timeout=120)
        yield Path(directory)


def run_one(product: str, planned: Planned, nice: int = 0, base: Path | None = None) -> dict[str, Any]:
    scenario, engine, nodes, processes = planned
    server_cpus, client_cpus = default_cpus()
    with (
        tempfile.TemporaryDirectory(prefix="resonance-bench-") as workdir,
        stack(Path(workdir), server_cpus, nice) as s,
    ):
        if product == "centrifugo":
            target = s.start_centrifugo(engine, nodes=nodes)
        elif product == BASE:
            target = s.start_worker(engine, nodes=nodes, source=base, name=BASE, processes=processes)
        else:
            target = s.start_worker(engine, nodes=nodes, processes=processes)
        before = load_average()
        result = runner.run(scenario, target, client_cpus=client_cpus, nice=nice)
        result["load_average"] = {"start": before, "end": load_average()}
        if planned.name != scenario.kind.value:
            result["plan"] = planned.name
        return result


FIGURES: list[tuple[str, str, str]] = [
    # (section, key, label); latency, memory and CPU: lower is better; rates: higher is better.
    ("connect", "connects_per_s", "connects/s"),
    ("connect", "server_cpu_ms_per_connect", "server CPU ms/connect"),
    ("connect", "engine_cpu_ms_per_connect", "Redis CPU ms/connect"),
    ("idle", "server_kib_per_connection", "server KiB/conn"),
    ("publish", "latency_ms.p50_ms", "p50 ms"),
    ("publish", "latency_ms.p99_ms", "p99 ms"),
    ("publish", "latency_cross_node_ms.p99_ms", "cross-node p99 ms"),
    ("publish", "delivery_ratio", "delivered/expected"),
    ("publish", "delivered_msgs_per_s", "delivered msgs/s"),
    ("publish", "server_cores", "server cores"),
    ("publish", "delivered_msgs_per_server_core_s", "msgs per server core-s"),
    ("publish", "server_cpu_us_per_delivered", "server CPU µs/delivered"),
    ("publish", "engine_cpu_us_per_delivered", "Redis CPU µs/delivered"),
    ("storm", "reconnects_per_s", "reconnects/s"),
    ("storm", "server_cpu_ms_per_reconnect", "server CPU ms/reconnect"),
    ("storm", "engine_cpu_ms_per_reconnect", "Redis CPU ms/reconnect"),
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


def scenario_label(result: dict[str, Any]) -> str:
    """``chat`` for JSON (the default encoding), ``chat/protobuf`` otherwise; a plan entry with a name of
    its own (``chat_redis_processes``) goes by that name."""
    scenario = result["scenario"]
    kind = result.get("plan", scenario["kind"])
    encoding = scenario.get("encoding", Encoding.JSON.value)
    return kind if encoding == Encoding.JSON.value else f"{kind}/{encoding}"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 2) if denominator and numerator is not None else None


def summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row per scenario and figure: each product's value, worker/centrifugo and worker/base ratios, and
    the load average (1 min) at the start and end of each product's run — the small summary document."""
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for result in results:
        product = result["target"].split("-")[0]
        by_kind.setdefault(scenario_label(result), {})[product] = result
    rows = []
    for kind, pair in by_kind.items():
        n = next(iter(pair.values()))["scenario"]["connections"]
        load = {
            p: [r["load_average"]["start"][0], r["load_average"]["end"][0]]
            for p, r in pair.items()
            if "load_average" in r
        }
        for section, key, label in FIGURES:
            values = {p: figure(pair[p], section, key) for p in pair}
            if all(v is None for v in values.values()):
                continue
            rows.append(
                {
                    "scenario": kind,
                    "connections": n,
                    "figure": label,
                    "values": values,
                    "worker_vs_centrifugo": _ratio(values.get("worker"), values.get("centrifugo")),
                    "worker_vs_base": _ratio(values.get("worker"), values.get(BASE)),
                    "load_1min": load,
                }
            )
    return rows


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table: a row per scenario and figure, a column per product, the worker/Centrifugo ratio (and
    worker/base when the run had a baseline worker)."""
    rows = summary(results)
    with_base = any(BASE in row["values"] for row in rows)
    head = "| scenario | figure | centrifugo | worker | worker / centrifugo |"
    rule = "|---|---|---|---|---|"
    if with_base:
        head, rule = head + " base | worker / base |", rule + "---|---|"
    lines = [head, rule]

    def shown(value: float | None) -> str:
        return "—" if value is None else f"{value:g}"

    def ratio(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    for row in rows:
        values = row["values"]
        line = (
            f"| {row['scenario']} N={row['connections']} | {row['figure']}"
            f" | {shown(values.get('centrifugo'))} | {shown(values.get('worker'))}"
            f" | {ratio(row['worker_vs_centrifugo'])} |"
        )
        if with_base:
            line += f" {shown(values.get(BASE))} | {ratio(row['worker_vs_base'])} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the reduced set (a few minutes)")
    parser.add_argument("--targets", nargs="+", choices=PRODUCTS, default=list(PRODUCTS))
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*(k.value for k in Kind), MULTI_PROCESS],
        help="run just these scenarios",
    )
    parser.add_argument(
        "--encodings", nargs="+", choices=[e.value for e in Encoding], default=[e.value for e in Encoding]
    )
    parser.add_argument(
        "--baseline-ref",
        help="also run the worker of this git ref (e.g. main), checked out to a temporary directory",
    )
    parser.add_argument(
        "--connections",
        type=int,
        help="the plan's size instead of 2,000 (--quick) or 10,000 (e.g. 5000 on the way to 10,000)",
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
        "baseline_ref": args.baseline_ref,
        "connections": args.connections,
        "results": [],
        "failures": [],
    }
    products = list(args.targets) + ([BASE] if args.baseline_ref else [])
    with contextlib.ExitStack() as cleanup:
        base = cleanup.enter_context(checkout(args.baseline_ref)) if args.baseline_ref else None
        _run_plan(args, products, base, document)
    path = args.out / f"load-{stamp}.json"
    path.write_text(json.dumps(document, indent=2))
    plot.plot_results(document["results"], path.with_suffix(".png"), title=f"load {stamp}")
    figures = plot.plot_scenarios(document["results"], args.out, stem=f"load-{stamp}-")
    rows = summary(document["results"])
    brief = {key: document[key] for key in ("machine", "quick", "baseline_ref", "failures")}
    summary_path = args.out / f"summary-{stamp}.json"
    summary_path.write_text(json.dumps({**brief, "rows": rows}, indent=1))
    plot.plot_ratios(rows, summary_path.with_suffix(".png"), title=f"worker / centrifugo, {stamp}")
    print(table(document["results"]))
    for failure in document["failures"]:
        print(f"FAILED: {failure['run']}: {failure['error']}")
    print(
        f"wrote {path}, {summary_path} (+ .png), {path.with_suffix('.png')} and {len(figures)} scenario "
        "figures",
        file=sys.stderr,
    )
    return 1 if document["failures"] else 0


def _run_plan(
    args: argparse.Namespace, products: list[str], base: Path | None, document: dict[str, Any]
) -> None:
    for planned in scenarios(args.quick, args.connections):
        scenario, engine, nodes, processes = planned
        if args.only and planned.name not in args.only:
            continue
        if scenario.encoding.value not in args.encodings:
            continue
        for product in products:
            label = (
                f"{planned.name} ({scenario.encoding.value}) on {product}-{engine.value} ×{nodes}"
                f"{f' ({processes} processes)' if processes > 1 and product != 'centrifugo' else ''}, "
                f"N={scenario.connections}"
            )
            print(f"… {label}", file=sys.stderr, flush=True)
            try:
                result = run_one(product, planned, args.nice, base)
            except Exception as exc:  # one failing target must not hide the others' figures
                traceback.print_exc()
                document["failures"].append({"run": label, "error": repr(exc)})
                continue
            document["results"].append(result)


if __name__ == "__main__":
    sys.exit(main())
