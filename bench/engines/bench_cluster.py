"""Cross-node chat on a Redis Cluster of 1 and of 3 shards, in one run (the engine's Cluster mode).

    .venv/bin/python -m bench.engines.bench_cluster [--seconds 2] [--channels 30]

For each shard count a private Cluster of Debian ``redis-server`` nodes is started (the test
harness's ``RedisClusterNodes``, no replicas), and two Redis engines in Cluster mode act as two
pods: one publishes into ``--channels`` chat rooms (64 publishes in flight), the other is subscribed
to every room and receives each publication (sharded pub/sub). Measured: publications published and
delivered per second, and the Redis CPU (``INFO cpu``, user + sys) each shard spent per 1000
publications. One Python process drives both pods, so on a small machine the delivered rate is
bounded by the client, not by Redis: the figure that shows what shards buy is the **busiest shard's
CPU per 1000 publications** (the headroom each shard has left), whose ratio 1-shard / 3-shard is
printed. Writes ``bench/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from resonance_worker.engines.redis import RedisEngine
from resonance_worker.redis_client import RedisConnector
from resonance_worker.settings import RedisMode

from bench.engines.bench_publish import DATA, HISTORY, INFO, Counter, write_results

RESULTS = Path(__file__).resolve().parent.parent / "results" / "cluster.json"


def _cpu_seconds(cluster: Any) -> dict[int, float]:
    """Each primary's Redis CPU so far (user + sys), by port."""
    found: dict[int, float] = {}
    for node in cluster.primaries():
        info = cluster.client(node).info("cpu")
        found[node.port] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return found


async def chat(cluster: Any, seconds: float, channels: int) -> dict[str, Any]:
    connector = RedisConnector(cluster.url, mode=RedisMode.CLUSTER, cluster_nodes=cluster.startup_nodes)
    prefix = f"bench{int(time.time())}"
    publisher, subscriber, counter = (
        RedisEngine(connector, prefix=prefix),
        RedisEngine(connector, prefix=prefix),
        Counter(),
    )
    rooms = [f"chat:room-{n}" for n in range(channels)]
    await publisher.start(Counter())
    await subscriber.start(counter)
    try:
        for room in rooms:
            await subscriber.subscribe(room)
        before = await asyncio.to_thread(_cpu_seconds, cluster)
        started = time.perf_counter()
        sent = 0
        while time.perf_counter() - started < seconds:
            batch = [rooms[(sent + i) % channels] for i in range(64)]
            await asyncio.gather(*(publisher.publish(r, DATA, info=INFO, history=HISTORY) for r in batch))
            sent += 64
        counter.target = sent
        if counter.received < sent:
            await asyncio.wait_for(counter.reached.wait(), timeout=60)
        elapsed = time.perf_counter() - started
        after = await asyncio.to_thread(_cpu_seconds, cluster)
    finally:
        await publisher.close()
        await subscriber.close()
        await connector.aclose()
    per_shard = {port: (after[port] - before[port]) * 1e6 / sent for port in after}  # ms per 1000
    return {
        "shards": len(after),
        "publications": sent,
        "published_and_delivered_per_s": sent / elapsed,
        "redis_cpu_ms_per_1000_by_shard": per_shard,
        "busiest_shard_cpu_ms_per_1000": max(per_shard.values()),
        "all_shards_cpu_ms_per_1000": sum(per_shard.values()),
    }


def run(seconds: float, channels: int) -> dict[str, Any]:
    from tests.harness.rediscluster import RedisClusterNodes  # the same real Cluster the tests use

    rows = []
    for shards in (1, 3):
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-cluster-{shards}-"))
        cluster = RedisClusterNodes(workdir, primaries=shards, replicas_per_primary=0).start()
        try:
            rows.append(asyncio.run(chat(cluster, seconds, channels)))
        finally:
            cluster.stop()
    one, three = rows
    return {
        "benchmark": "engines.cluster_chat",
        "seconds": seconds,
        "channels": channels,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "one_shard": one,
        "three_shards": three,
        "ratio_busiest_shard_cpu_1_over_3": one["busiest_shard_cpu_ms_per_1000"]
        / three["busiest_shard_cpu_ms_per_1000"],
        "ratio_delivered_3_over_1": three["published_and_delivered_per_s"]
        / one["published_and_delivered_per_s"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="publishing time per Cluster")
    parser.add_argument("--channels", type=int, default=30, help="chat rooms (spread over the shards)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = run(args.seconds, args.channels)
    print(f"{'':34} {'1 shard':>10} {'3 shards':>10}")
    for key in (
        "published_and_delivered_per_s",
        "busiest_shard_cpu_ms_per_1000",
        "all_shards_cpu_ms_per_1000",
    ):
        print(f"{key:34} {results['one_shard'][key]:10,.1f} {results['three_shards'][key]:10,.1f}")
    ratio = results["ratio_busiest_shard_cpu_1_over_3"]
    print(f"busiest shard's CPU per publication, 1 / 3 shards: {ratio:.2f}")
    write_results(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
