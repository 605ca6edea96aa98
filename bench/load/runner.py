"""The coordinator: spreads a scenario over load processes, runs its phases, measures the server, and returns
one JSON-ready result. Every wait has a deadline; load processes are always stopped."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bench.load import procstat
from bench.load.scenario import Kind, Scenario, Target
from bench.load.shard import ShardPlan, monotonic_ns, shard_main
from bench.load.stats import PerSecond, Reservoir, merge_summaries


class LoadError(Exception):
    """A load process failed or missed a deadline."""


class Sampler:
    """Samples the server processes' RSS and CPU every ``interval`` seconds in a thread."""

    def __init__(self, pids: Sequence[int], interval: float = 0.5, engine_pids: Sequence[int] = ()) -> None:
        self.pids = tuple(pids)
        self.engine_pids = tuple(engine_pids)
        self.interval = interval
        self.timeline: list[tuple[float, int, float]] = []  # (monotonic s, rss KiB, cpu s)
        self.engine_cpu: list[tuple[float, float]] = []  # (monotonic s, the engine's cpu s)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def take(self) -> procstat.Sample | None:
        if not self.pids:
            return None
        with self._lock:
            try:
                current = procstat.sample(self.pids)
                engine = procstat.sample(self.engine_pids) if self.engine_pids else None
            except (OSError, ValueError):
                return None
            now = time.monotonic()
            self.timeline.append((now, current.rss_kib, current.cpu_s))
            if engine is not None:
                self.engine_cpu.append((now, engine.cpu_s))
        return current

    def engine_cpu_s(self, start: float, end: float) -> float | None:
        """The engine's CPU seconds over [start, end] (None when no engine process is measured)."""
        inside = [row for row in self.engine_cpu if start <= row[0] <= end]
        return inside[-1][1] - inside[0][1] if len(inside) >= 2 else None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.take()

    def __enter__(self) -> Sampler:
        self.take()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def between(self, start: float, end: float) -> tuple[float, int] | None:
        """(cores used on average, peak RSS KiB) over [start, end] in monotonic seconds."""
        inside = [row for row in self.timeline if start <= row[0] <= end]
        if len(inside) < 2:
            return None
        (t0, _, c0), (t1, _, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0, max(row[1] for row in inside)


class Shards:
    def __init__(
        self, scenario: Scenario, target: Target, cpus: frozenset[int] | None, nice: int = 0
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self.pipes: list[Connection] = []
        for index, connections in enumerate(scenario.shard_ranges()):
            parent, child = context.Pipe()
            plan = ShardPlan(
                index=index, scenario=scenario, target=target, connections=connections, cpus=cpus, nice=nice
            )
            process = context.Process(
                target=shard_main, args=(plan, child), daemon=True, name=f"load-{index}"
            )
            process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)

    def call(self, phase: str, timeout: float, **arguments: Any) -> list[dict[str, Any]]:
        for pipe in self.pipes:
            pipe.send((phase, arguments))
        deadline = time.monotonic() + timeout
        replies = []
        for index, pipe in enumerate(self.pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise LoadError(f"load process {index} did not finish {phase!r} within {timeout:.0f} s")
            try:
                reply = pipe.recv()
            except EOFError:
                raise LoadError(f"load process {index} died during {phase!r}") from None
            if "crashed" in reply:
                raise LoadError(f"load process {index} failed: {reply['crashed']}")
            replies.append(reply)
        return replies

    def stop(self) -> None:
        with contextlib.suppress(LoadError, OSError):
            self.call("close", timeout=30)
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


def _cpu_s(before: procstat.Sample | None, after: procstat.Sample | None) -> float | None:
    """Server CPU seconds (user + system) between two samples."""
    return None if before is None or after is None else after.cpu_s - before.cpu_s


def _per(total: float | None, count: int, scale: float) -> float | None:
    return None if total is None or count <= 0 else round(total * scale / count, 3)


def _errors(replies: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "errors": sum(r["errors"] for r in replies),
        "first_errors": [e for r in replies for e in r["first_errors"]][:5],
    }


def _summary(parts: list[Reservoir]) -> dict[str, Any] | None:
    merged = merge_summaries(parts)
    return None if merged is None else merged.as_dict()


def run(
    scenario: Scenario, target: Target, *, client_cpus: frozenset[int] | None = None, nice: int = 0
) -> dict[str, Any]:
    """Run one scenario against one target and return its result document.

    ``nice`` (negative needs root) lifts the load processes above other work on a shared machine."""
    if scenario.kind is Kind.CROSS_NODE and len(target.ws_urls) < 2:
        raise ValueError("the cross-node scenario needs a target with at least two nodes")
    result: dict[str, Any] = {
        "scenario": scenario.model_dump(mode="json"),
        "target": target.name,
        "nodes": len(target.ws_urls),
    }
    started = time.monotonic()
    with Sampler(target.server_pids, engine_pids=target.engine_pids) as sampler:
        base = sampler.take()
        shards = Shards(scenario, target, client_cpus, nice)
        try:
            _run_phases(scenario, shards, sampler, base, result)
        finally:
            shards.stop()
        result["timeline"] = [
            {"t_s": round(t - started, 2), "rss_mib": round(rss / 1024, 1), "cpu_s": round(cpu, 2)}
            for t, rss, cpu in sampler.timeline
        ]
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def _run_phases(
    scenario: Scenario,
    shards: Shards,
    sampler: Sampler,
    base: procstat.Sample | None,
    result: dict[str, Any],
) -> None:
    ready = shards.call("ready", timeout=120)
    ramp_start = time.monotonic()
    ramp_before = sampler.take()
    replies = shards.call("connect", timeout=scenario.connect_timeout_s + 60)
    ramp_cpu = _cpu_s(ramp_before, sampler.take())
    ramp_engine_cpu = sampler.engine_cpu_s(ramp_start, time.monotonic())
    ramp_wall = max(r["wall_s"] for r in replies)
    connected = sum(r["ok"] for r in replies)
    result["connect"] = {
        "requested": scenario.connections,
        "connected": connected,
        "failed": sum(r["failed"] for r in replies),
        "timed_out": sum(r["timed_out"] for r in replies),
        "wall_s": round(ramp_wall, 2),
        "connects_per_s": round(connected / ramp_wall, 1) if ramp_wall > 0 else None,
        "handshake_ms": _summary([r["handshake_ms"] for r in replies]),
        # Server CPU (user + system, /proc) of one connect + subscribe: the ramp's CPU over its connects.
        "server_cpu_ms_per_connect": _per(ramp_cpu, connected, 1e3),
        # The same for the engine's processes (Redis), when the target names them.
        "engine_cpu_ms_per_connect": _per(ramp_engine_cpu, connected, 1e3),
        **_errors(replies),
    }
    idle_start = time.monotonic()
    time.sleep(scenario.settle_s)
    after = sampler.take()
    if base is not None and after is not None and connected:
        usage = sampler.between(idle_start, time.monotonic())
        result["idle"] = {
            "server_rss_base_mib": round(base.rss_kib / 1024, 1),
            "server_rss_mib": round(after.rss_kib / 1024, 1),
            "server_kib_per_connection": round((after.rss_kib - base.rss_kib) / connected, 2),
            "server_cores_idle": None if usage is None else round(usage[0], 3),
        }
    result["client"] = {
        "processes": len(replies),
        "rss_kib_per_connection": round(
            sum(r["client_rss_kib"] - q["client_rss_kib"] for r, q in zip(replies, ready, strict=True))
            / max(1, connected),
            2,
        ),
    }
    if scenario.kind is Kind.RECONNECT_STORM:
        _storm(scenario, shards, sampler, result)
    elif scenario.publishes:
        _publish(scenario, shards, sampler, result)


def _publish(scenario: Scenario, shards: Shards, sampler: Sampler, result: dict[str, Any]) -> None:
    lead_s = 1.0
    start_ns = monotonic_ns() + int(lead_s * 1e9)
    start_s = time.monotonic() + lead_s
    timeout = lead_s + scenario.duration_s + scenario.drain_s + 60
    cpu_before = sum(r["client_cpu_s"] for r in shards.call("collect", timeout=30))
    replies = shards.call("publish", timeout=timeout, start_ns=start_ns, duration_s=scenario.duration_s,
                          drain_s=scenario.drain_s)  # fmt: skip
    publish_end_s = start_s + (max(r["publish_end_ns"] for r in replies) - start_ns) / 1e9
    collected = shards.call("collect", timeout=30)
    received = sum(r["received"] for r in collected)
    expected = sum(r["expected"] for r in replies)
    window = max(1e-3, publish_end_s - start_s)
    usage = sampler.between(start_s, publish_end_s + scenario.drain_s)
    server_cores = None if usage is None else usage[0]
    engine_cpu = sampler.engine_cpu_s(start_s, publish_end_s + scenario.drain_s)
    delivered_per_s = received / (window + min(scenario.drain_s, 1.0))
    result["publish"] = {
        "published": sum(r["published"] for r in replies),
        "expected_deliveries": expected,
        "received": received,
        "delivery_ratio": round(received / expected, 4) if expected else None,
        "publish_errors": sum(r["publish_errors"] for r in replies),
        "window_s": round(window, 2),
        "delivered_msgs_per_s": round(delivered_per_s, 1),
        "server_cores": None if server_cores is None else round(server_cores, 3),
        "delivered_msgs_per_server_core_s": (
            round(delivered_per_s / server_cores, 1) if server_cores else None
        ),
        "server_cpu_us_per_delivered": (
            round(server_cores * 1e6 / delivered_per_s, 2) if server_cores and delivered_per_s else None
        ),
        # The engine's (Redis) CPU over the publishing window, per publication and per delivery.
        "engine_cpu_us_per_publication": _per(engine_cpu, sum(r["published"] for r in replies), 1e6),
        "engine_cpu_us_per_delivered": _per(engine_cpu, received, 1e6),
        "server_rss_peak_mib": None if usage is None else round(usage[1] / 1024, 1),
        "client_cpu_s": round(sum(r["client_cpu_s"] for r in collected) - cpu_before, 2),
        "worst_publish_late_ms": round(max(r["worst_publish_late_ms"] for r in replies), 1),
        "latency_ms": _summary(
            [r["latency_local"] for r in collected] + [r["latency_cross"] for r in collected]
        ),
        "latency_same_node_ms": _summary([r["latency_local"] for r in collected]),
        "latency_cross_node_ms": _summary([r["latency_cross"] for r in collected]),
        "open_connections": sum(r["open"] for r in collected),
        # By the second of sending: deliveries, the slowest, and how many took over 100 ms.
        "latency_by_second": PerSecond.merge([r["per_second"] for r in collected]),
        **_errors(collected),
    }


def _storm(scenario: Scenario, shards: Shards, sampler: Sampler, result: dict[str, Any]) -> None:
    dropped = shards.call("drop", timeout=120)
    gap = shards.call("gap", timeout=120, messages=scenario.gap_messages)
    storm_start = time.monotonic()
    storm_before = sampler.take()
    replies = shards.call(
        "reconnect", timeout=scenario.connect_timeout_s + 60, messages=scenario.gap_messages
    )
    storm_cpu = _cpu_s(storm_before, sampler.take())  # the ramp, and the 1 s wait for stragglers
    storm_engine_cpu = sampler.engine_cpu_s(storm_start, time.monotonic())
    wall = time.monotonic() - storm_start - 1.0  # each shard waits 1 s for stragglers after its ramp
    usage = sampler.between(storm_start, storm_start + wall)
    reconnected = sum(r["ok"] for r in replies)
    ramp = max(r["wall_s"] for r in replies)
    result["storm"] = {
        "dropped": sum(r["dropped"] for r in dropped),
        "gap_published": sum(r["gap_published"] for r in gap),
        "returning": sum(r["returning"] for r in replies),
        "reconnected": reconnected,
        "failed": sum(r["failed"] for r in replies),
        "timed_out": sum(r["timed_out"] for r in replies),
        "storm_wall_s": round(ramp, 2),
        "reconnects_per_s": round(reconnected / ramp, 1) if ramp > 0 else None,
        "handshake_ms": _summary([r["handshake_ms"] for r in replies]),
        "recovered_subscriptions": sum(r["recovered_subs"] for r in replies),
        "unrecovered_subscriptions": sum(r["unrecovered_subs"] for r in replies),
        "clients_with_every_gap_message": sum(r["complete"] for r in replies),
        "missing_messages": sum(r["missing_messages"] for r in replies),
        "server_cores": None if usage is None else round(usage[0], 3),
        # Server CPU of one reconnect with recovery (the whole phase's CPU over its reconnects).
        "server_cpu_ms_per_reconnect": _per(storm_cpu, reconnected, 1e3),
        "engine_cpu_ms_per_reconnect": _per(storm_engine_cpu, reconnected, 1e3),
        "server_rss_peak_mib": None if usage is None else round(usage[1] / 1024, 1),
        **_errors(replies),
    }
