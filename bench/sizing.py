"""What one worker costs per connection, with the settings the operator renders: the numbers behind the
connection limits in ``docs/operator.md`` (sizing).

    .venv/bin/python -m bench.sizing                       # 2,000, 5,000 and 10,000 connections
    .venv/bin/python -m bench.sizing --connections 2000    # one size

For each size, two workers are measured one after the other, fresh each time, in the same run:

* ``operator`` - started with exactly the environment the operator renders for ``examples/full.yaml``
  (``worker_environment``: the Redis engine, JSON logs, the drain settings, …), against a real Redis;
* ``baseline`` - ``make run``'s defaults (the in-memory engine), the reference the ratio is taken against.

Neo4j is left out of the operator profile (another service, one driver pool per process).

Connection limits are the only override (lifted, so the load is not refused: that is what is being sized).
Load: the chat scenario of ``bench.load`` from 200 loopback source addresses - every connection subscribes
to a 50-member room and each room gets one publication a second for ``--seconds``. **Idle** is the RSS
growth per connection after the ramp and a settle pause; **active** is the peak RSS while publishing, per
connection. Results: ``bench/results/sizing-<time>.json`` and a table on stdout.

A person streaming biometrics (``bio.push``) costs more than a connection: :func:`person_cost` keeps
``--persons`` biometric streams in one process, feeds each a minute and a half of one-second 30 Hz PPG
batches through the worker's ``bio.push`` path without the network, and reports the memory each stream
holds (tracemalloc) and the CPU time of one update.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.load import runner
from bench.load.scenario import Scenario, Target, chat_scenario
from bench.load.servers import Server, _wait_until, free_port, stack, worker_settled

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "full.yaml"
SOURCE_ADDRESSES = 200
LIFTED_LIMITS = {
    "RESONANCE_LIMITS__MAX_CONNECTIONS": "0",
    "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP": "0",
    "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_USER": "0",
}


def operator_environment(example: Path = EXAMPLE) -> dict[str, str]:
    """The plain ``RESONANCE_*`` variables the operator renders for ``example`` (secrets come separately)."""
    from resonance_operator.api.spec import parse
    from resonance_operator.desired.settings import worker_environment

    body = yaml.safe_load(example.read_text())
    body.setdefault("metadata", {}).setdefault("namespace", "default")
    plain = dict(worker_environment(parse(body)).plain)
    # The graph is another service, reached through one driver pool per process, not per connection.
    return {key: value for key, value in plain.items() if not key.startswith("RESONANCE_NEO4J__")}


def start_worker(
    workdir: Path, env: dict[str, str], servers: list[Server], name: str
) -> tuple[str, int, str]:
    """A ``resonance-worker`` with ``env`` on a free loopback port: (ws URL, pid, token secret)."""
    port = free_port()
    secret = secrets.token_hex(16)
    full = {
        **env,
        "RESONANCE_HOST": "127.0.0.1",
        "RESONANCE_PORT": str(port),
        "RESONANCE_JWT_SECRET": secret,
        "RESONANCE_NODE_NAME": name,
        **LIFTED_LIMITS,
    }
    executable = str(Path(sys.executable).parent / "resonance-worker")
    server = Server(f"{name}:{port}", [executable], log=workdir / f"{name}-{port}.log", env=full)
    servers.append(server)
    _wait_until(lambda: worker_settled(f"http://127.0.0.1:{port}/ready"), 60, server.name, server.process)
    return f"ws://127.0.0.1:{port}/connection/websocket", server.pid, secret


def sizing_scenario(connections: int, seconds: float, *, settle_s: float = 3.0) -> Scenario:
    """The chat scenario the sizing and capacity runs load a worker with (200 source addresses)."""
    return chat_scenario(
        connections,
        source_addresses=SOURCE_ADDRESSES,
        seconds=seconds,
        processes=2,
        connect_concurrency=200,
        connect_timeout_s=300,
        settle_s=settle_s,
        drain_s=2.0,
    )


def measure(profile: str, connections: int, seconds: float, workdir: Path) -> dict[str, Any]:
    scenario = sizing_scenario(connections, seconds)
    with stack(workdir / f"{profile}-{connections}") as servers:
        if profile == "operator":
            env = operator_environment()
            env["RESONANCE_REDIS_URL"] = servers.start_redis()
        else:
            env = {"RESONANCE_LOG_LEVEL": "WARNING", "RESONANCE_LOG_JSON": "false"}
        url, pid, secret = start_worker(servers.workdir, env, servers.servers, f"worker-{profile}")
        target = Target(name=f"worker-{profile}", ws_urls=(url,), token_secret=secret, server_pids=(pid,))
        result = runner.run(scenario, target)
    connected = result["connect"]["connected"]
    idle = result.get("idle", {})
    publish = result.get("publish", {})
    base = idle.get("server_rss_base_mib")
    peak = publish.get("server_rss_peak_mib")
    return {
        "profile": profile,
        "connections": connections,
        "connected": connected,
        "rss_base_mib": base,
        "rss_idle_mib": idle.get("server_rss_mib"),
        "idle_kib_per_connection": idle.get("server_kib_per_connection"),
        "rss_active_peak_mib": peak,
        "active_kib_per_connection": (
            round((peak - base) * 1024 / connected, 2) if peak and base and connected else None
        ),
        "delivery_ratio": publish.get("delivery_ratio"),
        "latency_p99_ms": (publish.get("latency_ms") or {}).get("p99_ms"),
        "server_cores": publish.get("server_cores"),
        "raw": result,
    }


def person_cost(persons: int = 50, seconds: int = 90) -> dict[str, Any]:
    """Memory held per biometric stream after ``seconds`` of PPG, and CPU milliseconds per update."""
    import tracemalloc

    from resonance_worker.domain.biometrics import BiometricStream
    from resonance_worker.living.biometrics import parse_batch, push

    from bench.living.bio_update import batches

    feed = batches(seconds)
    tracemalloc.start()
    streams = [BiometricStream() for _ in range(persons)]
    cpu: list[float] = []
    for batch in feed:
        for stream in streams:
            started = time.thread_time()
            push(stream, parse_batch(batch))
            cpu.append(time.thread_time() - started)
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    cpu.sort()
    return {
        "persons": persons,
        "seconds": seconds,
        "kib_per_person": round(held / persons / 1024, 1),
        "update_cpu_p50_ms": round(cpu[len(cpu) // 2] * 1000, 2),
        "update_cpu_p95_ms": round(cpu[int(len(cpu) * 0.95)] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, nargs="+", default=[2000, 5000, 10_000])
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing phase of each run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--persons", type=int, default=50, help="biometric streams for person_cost (0: skip)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sizing-") as tmp:
        for connections in args.connections:
            for profile in ("baseline", "operator"):
                started = time.monotonic()
                row = measure(profile, connections, args.seconds, Path(tmp))
                row["wall_s"] = round(time.monotonic() - started, 1)
                rows.append(row)
                print(
                    f"{profile:9} {connections:6} conns: connected {row['connected']}, base "
                    f"{row['rss_base_mib']} MiB, idle {row['idle_kib_per_connection']} KiB/conn, active "
                    f"{row['active_kib_per_connection']} KiB/conn (peak {row['rss_active_peak_mib']} MiB), "
                    f"delivered {row['delivery_ratio']}, p99 {row['latency_p99_ms']} ms ({row['wall_s']} s)",
                    flush=True,
                )
    persons = person_cost(args.persons) if args.persons else None
    if persons is not None:
        print(
            f"bio.push person: {persons['kib_per_person']} KiB held per stream, update CPU p50 "
            f"{persons['update_cpu_p50_ms']} ms, p95 {persons['update_cpu_p95_ms']} ms",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sizing-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "operator_environment": operator_environment(),
        "rows": rows,
        "persons": persons,
    }
    path.write_text(json.dumps(document, indent=2))
    print(f"\n{'size':>6} | {'idle KiB/conn (op/base)':>24} | {'active KiB/conn (op/base)':>26}")
    by = {(r["profile"], r["connections"]): r for r in rows}
    for connections in args.connections:
        op, base = by[("operator", connections)], by[("baseline", connections)]

        def ratio(key: str, op: dict[str, Any] = op, base: dict[str, Any] = base) -> str:
            a, b = op[key], base[key]
            return f"{a} / {b} ({a / b:.2f}x)" if a and b else f"{a} / {b}"

        print(
            f"{connections:6} | {ratio('idle_kib_per_connection'):>24} | "
            f"{ratio('active_kib_per_connection'):>26}"
        )
    print(f"written {path}")


if __name__ == "__main__":
    main()
