"""Cross-node chat on a Redis Cluster of 1 and of 3 shards, in one run: what scales with shards.

    .venv/bin/python -m bench.engines.bench_cluster [--seconds 5] [--publishers 3] [--pods 8] [--rooms 300]

For each shard count a private Cluster of Debian ``redis-server`` nodes is started (the test harness's
``RedisClusterNodes``, no replicas) and loaded by separate processes, so no single Python client is the
limit:

- ``--publishers`` processes, each with its own event loop and its own Redis engine in Cluster mode (a
  pod's publishing side: the engine's publish script, history kept, its auto-pipeline batching the
  publishes in flight per shard), publish into ``--rooms`` chat rooms, 256 publishes in flight each;
- one process holds ``--pods`` raw sharded-pub/sub subscribers (each one connection per shard,
  ``SSUBSCRIBE``-d to every room on its slot's primary - what a worker pod's pub/sub holds) and counts
  the publications delivered to them (``smessage`` frames, counted as bytes, so receiving costs little).

All processes start together and are measured over the same window. Measured per shard count:
publications acknowledged per second, deliveries per second (publications × pods reached), each shard's
Redis CPU (``INFO cpu``, user + sys) as a share of one core, the busiest shard's CPU per 1000
publications, and the **capacity**: the publication rate at which the busiest shard would be at 100 % of
a core (the rate measured ÷ that shard's share of a core) - the figure that scales with shards when the
load generator, not Redis, is the limit, as on a small machine. Also the load average. Ratios (3 shards
÷ 1 shard) are printed. Writes ``bench/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from redis.crc import key_slot

from bench.engines.bench_publish import DATA, HISTORY, INFO, write_results

RESULTS = Path(__file__).resolve().parent.parent / "results" / "cluster.json"
IN_FLIGHT = 256
PIPELINE = 64
CONNECTIONS = 6  # pipelined connections per publishing process
Address = tuple[str, int]


def _cpu_seconds(cluster: Any) -> dict[int, float]:
    """Each primary's Redis CPU so far (user + sys), by port."""
    found: dict[int, float] = {}
    for node in cluster.primaries():
        info = cluster.client(node).info("cpu")
        found[node.port] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return found


async def _ready(go: Any, out: Any) -> None:
    """Say this process is ready, then wait for the window to be set."""
    out.put(("ready", 0))
    await asyncio.to_thread(go.wait)


def _wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


# -- the publishing pods ------------------------------------------------------------------------


async def _publish(
    nodes: list[Address], prefix: str, rooms: list[str], go: Any, window: Any, out: Any
) -> int:
    from resonance_worker.engines.redis import RedisEngine
    from resonance_worker.redis_client import RedisConnector
    from resonance_worker.settings import RedisMode

    host, port = nodes[0]
    connector = RedisConnector(f"redis://{host}:{port}/0", mode=RedisMode.CLUSTER, cluster_nodes=nodes)
    engine = RedisEngine(connector, prefix=prefix, timeout=10.0)
    await engine.start()
    try:
        await engine.publish(rooms[0], DATA, info=INFO, history=HISTORY)  # scripts loaded, slots known
        await _ready(go, out)
        began, until = window[0], window[0] + window[1]
        await asyncio.sleep(max(0.0, began - time.time()))
        counted = 0

        async def one() -> None:
            nonlocal counted
            while time.time() < until:
                await engine.publish(random.choice(rooms), DATA, info=INFO, history=HISTORY)
                if time.time() <= until:
                    counted += 1

        await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))
        return counted
    finally:
        await engine.close()
        await connector.aclose()


def _publisher(nodes: list[Address], prefix: str, rooms: list[str], go: Any, window: Any, out: Any) -> None:
    out.put(("published", asyncio.run(_publish(nodes, prefix, rooms, go, window, out))))


async def _publish_pipelined(
    nodes: list[Address],
    prefix: str,
    rooms_by_node: dict[Address, list[str]],
    go: Any,
    window: Any,
    out: Any,
) -> int:
    """The engine's own publish script with the arguments the engine computes for each room, replayed
    over ``CONNECTIONS`` raw connections (dealt over the shards) in pipelines of ``PIPELINE``, so that
    Redis, not this client, is the limit."""
    from resonance_worker.engines.redis import RedisEngine
    from resonance_worker.redis_client import RedisConnector
    from resonance_worker.settings import RedisMode

    host, port = nodes[0]
    connector = RedisConnector(f"redis://{host}:{port}/0", mode=RedisMode.CLUSTER, cluster_nodes=nodes)
    engine = RedisEngine(connector, prefix=prefix, timeout=10.0)
    await engine.start()
    commands: dict[Address, list[bytes]] = {}
    try:
        sha = engine.publish_script_sha.encode()
        for address, rooms in rooms_by_node.items():
            await engine.publish(rooms[0], DATA, info=INFO, history=HISTORY)  # the script is on that shard
            commands[address] = []
            for room in rooms:
                keys, args = engine.publish_call(room, DATA, info=INFO, history=HISTORY)
                parts = [b"EVALSHA", sha, b"3", *keys, *args, b"1", b"spublish"]
                commands[address].append(
                    _command(*(p if isinstance(p, bytes) else str(p).encode() for p in parts))
                )
    finally:
        await engine.close()
        await connector.aclose()
    await _ready(go, out)
    began, until = window[0], window[0] + window[1]
    await asyncio.sleep(max(0.0, began - time.time()))
    counted = 0

    async def shard(address: Address) -> None:
        nonlocal counted
        reader, writer = await asyncio.open_connection(*address)
        pool = commands[address]
        try:
            while time.time() < until:
                writer.write(b"".join(random.choices(pool, k=PIPELINE)))
                replies = 0
                tail = b""
                while replies < PIPELINE:
                    data = tail + await reader.read(1 << 16)
                    if b"-" in data[:1] or b"\r\n-" in data:
                        raise RuntimeError(f"redis refused a publish: {data[:200]!r}")
                    replies += data.count(b"*2\r\n")
                    tail = data[-3:]
                if time.time() <= until:
                    counted += PIPELINE
        finally:
            writer.close()

    # The same number of pipelines in flight whatever the shard count: CONNECTIONS, dealt over the shards.
    addresses = list(commands)
    await asyncio.gather(*(shard(addresses[n % len(addresses)]) for n in range(CONNECTIONS)))
    return counted


def _pipelined_publisher(
    nodes: list[Address], prefix: str, rooms_by_node: dict[Address, list[str]], go: Any, window: Any, out: Any
) -> None:
    out.put(("published", asyncio.run(_publish_pipelined(nodes, prefix, rooms_by_node, go, window, out))))


# -- the subscribed pods (raw, cheap) -------------------------------------------------------------


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


async def _subscribe_and_count(
    by_node: dict[Address, list[bytes]], pods: int, go: Any, window: Any, out: Any
) -> int:
    counts = [0]
    seen_at: dict[str, int] = {}
    tasks = []
    subscribed = 0
    connections = []
    for _ in range(pods):
        for (host, port), channels in by_node.items():
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"".join(_command(b"SSUBSCRIBE", c) for c in channels))
            await writer.drain()
            connections.append((reader, writer, len(channels)))
    for reader, _, wanted in connections:  # every confirmation read before the window opens
        seen = b""
        while seen.count(b"ssubscribe") < wanted:
            seen += await reader.read(65536)
        subscribed += wanted

    async def count(reader: asyncio.StreamReader) -> None:
        tail = b""
        while True:
            chunk = await reader.read(1 << 20)
            if not chunk:
                return
            data = tail + chunk
            counts[0] += data.count(b"smessage")
            tail = data[-7:]  # a token cut at the chunk's end is counted with the next chunk

    tasks = [asyncio.ensure_future(count(reader)) for reader, _, _ in connections]
    await _ready(go, out)
    began, until = window[0], window[0] + window[1]
    await asyncio.sleep(max(0.0, began - time.time()))
    seen_at["start"] = counts[0]
    await asyncio.sleep(max(0.0, until - time.time()))
    seen_at["end"] = counts[0]
    for task in tasks:
        task.cancel()
    for _, writer, _ in connections:
        writer.close()
    return seen_at["end"] - seen_at["start"]


def _subscriber(by_node: dict[Address, list[bytes]], pods: int, go: Any, window: Any, out: Any) -> None:
    out.put(("delivered", asyncio.run(_subscribe_and_count(by_node, pods, go, window, out))))


# -- one Cluster ---------------------------------------------------------------------------------


def chat(
    cluster: Any, seconds: float, publishers: int, pods: int, rooms_count: int, *, pipelined: bool
) -> dict[str, Any]:
    from resonance_worker.domain.keys import channel_part

    ctx = multiprocessing.get_context("spawn")
    prefix = f"bench{int(time.time())}"
    rooms = [f"chat:room-{n}" for n in range(rooms_count)]
    owners = cluster.slot_owners()
    by_node: dict[Address, list[bytes]] = defaultdict(list)
    rooms_by_node: dict[Address, list[str]] = defaultdict(list)
    for room in rooms:
        channel = f"{prefix}.ch.{channel_part(room)}".encode()
        slot = key_slot(channel)
        owner = next(a for a, ranges in owners.items() if any(s <= slot <= e for s, e in ranges))
        by_node[owner].append(channel)
        rooms_by_node[owner].append(room)
    # ``window``: when the measured window opens (set once every process is ready) and how long it is.
    go, window, out = ctx.Event(), ctx.Array("d", [0.0, seconds]), ctx.Queue()
    nodes = list(cluster.startup_nodes)
    if pipelined:
        processes = [
            ctx.Process(
                target=_pipelined_publisher, args=(nodes, prefix, dict(rooms_by_node), go, window, out)
            )
            for _ in range(publishers)
        ]
    else:
        processes = [
            ctx.Process(target=_publisher, args=(nodes, prefix, rooms, go, window, out))
            for _ in range(publishers)
        ]
    processes.append(ctx.Process(target=_subscriber, args=(dict(by_node), pods, go, window, out)))
    for process in processes:
        process.start()
    for _ in processes:  # each imports, connects and subscribes, says so, then waits for ``go``
        kind, _value = out.get(timeout=300)
        assert kind == "ready", kind
    window[0] = began = time.time() + 1.0
    go.set()
    _wait_until(began)
    before = _cpu_seconds(cluster)
    load_before = os.getloadavg()[0]
    _wait_until(began + seconds)
    after = _cpu_seconds(cluster)
    load = max(load_before, os.getloadavg()[0])
    results: dict[str, int] = defaultdict(int)
    for _ in processes:
        kind, value = out.get(timeout=120)
        results[kind] += value
    for process in processes:
        process.join(timeout=30)
    published = results["published"]
    share = {port: (after[port] - before[port]) / seconds for port in after}  # of one core
    busiest = max(share.values())
    rate = published / seconds
    return {
        "shards": len(after),
        "publications": published,
        "published_per_s": rate,
        "delivered_per_s": results["delivered"] / seconds,
        "redis_cpu_share_of_a_core_by_shard": share,
        "busiest_shard_cpu_share": busiest,
        "busiest_shard_cpu_ms_per_1000": busiest * seconds * 1e6 / max(published, 1),
        "all_shards_cpu_ms_per_1000": sum(share.values()) * seconds * 1e6 / max(published, 1),
        "capacity_per_s_busiest_shard_at_one_core": rate / busiest if busiest else 0.0,
        "load_average_1m": load,
    }


def run(seconds: float, publishers: int, pods: int, rooms: int) -> dict[str, Any]:
    from tests.harness.rediscluster import RedisClusterNodes  # the same real Cluster the tests use

    results: dict[str, Any] = {
        "benchmark": "engines.cluster_chat",
        "seconds": seconds,
        "publishers": publishers,
        "pods": pods,
        "rooms": rooms,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    for load, pipelined in (("engine", False), ("pipelined", True)):
        rows = []
        for shards in (1, 3):
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-cluster-{shards}-"))
            cluster = RedisClusterNodes(workdir, primaries=shards, replicas_per_primary=0).start()
            try:
                rows.append(chat(cluster, seconds, publishers, pods, rooms, pipelined=pipelined))
            finally:
                cluster.stop()
        one, three = rows
        results[load] = {
            "one_shard": one,
            "three_shards": three,
            "ratio_capacity_3_over_1": _ratio(
                three["capacity_per_s_busiest_shard_at_one_core"],
                one["capacity_per_s_busiest_shard_at_one_core"],
            ),
            "ratio_busiest_shard_cpu_per_publication_1_over_3": _ratio(
                one["busiest_shard_cpu_ms_per_1000"], three["busiest_shard_cpu_ms_per_1000"]
            ),
            "ratio_published_3_over_1": _ratio(three["published_per_s"], one["published_per_s"]),
        }
    return results


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


ROWS = (
    "published_per_s",
    "delivered_per_s",
    "busiest_shard_cpu_share",
    "busiest_shard_cpu_ms_per_1000",
    "all_shards_cpu_ms_per_1000",
    "capacity_per_s_busiest_shard_at_one_core",
    "load_average_1m",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="the measured window per Cluster")
    parser.add_argument("--publishers", type=int, default=3, help="publishing processes")
    parser.add_argument("--pods", type=int, default=8, help="subscribed pods (one connection per shard each)")
    parser.add_argument("--rooms", type=int, default=300, help="chat rooms (spread over the shards)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = run(args.seconds, args.publishers, args.pods, args.rooms)
    for load in ("engine", "pipelined"):
        print(f"\n{load + ' publishers':42} {'1 shard':>10} {'3 shards':>10}")
        for key in ROWS:
            one, three = results[load]["one_shard"][key], results[load]["three_shards"][key]
            print(f"{key:42} {one:10,.2f} {three:10,.2f}")
        for key in (
            "ratio_capacity_3_over_1",
            "ratio_busiest_shard_cpu_per_publication_1_over_3",
            "ratio_published_3_over_1",
        ):
            print(f"{key}: {results[load][key]:.2f}")
    write_results(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
