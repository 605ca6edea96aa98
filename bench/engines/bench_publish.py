"""Engine micro-benchmark: publishes/s and history reads/s, memory vs Redis, in one run.

    .venv/bin/python -m bench.engines.bench_publish [--seconds 0.5] [--redis-url redis://...]

Without ``--redis-url`` a private redis-server is started on loopback (Debian's,
through the test harness) and stopped afterwards. Each measurement runs for a
fixed time slice, so the whole run takes a few seconds. Prints a table and writes
``bench/results/engines.json``; the memory engine is the baseline, and the
ratios (memory / redis) are what to compare between runs, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from resonance_worker.engines.base import ClientInfo, Engine, HistoryOptions, Publication, StreamPosition
from resonance_worker.engines.memory import MemoryEngine
from resonance_worker.engines.redis import RedisEngine

RESULTS = Path(__file__).resolve().parent.parent / "results" / "engines.json"
HISTORY = HistoryOptions(size=100, ttl_seconds=300)
DATA = b'{"hr":72.5,"hrv":48.1,"state":"calm","t":1732550000123}'
INFO = ClientInfo(user="bench-user", client="bench-client", conn_info=b'{"name":"bench"}')


class Counter:
    """An event handler that counts publications and wakes a waiter at a target."""

    def __init__(self) -> None:
        self.received = 0
        self.target = 0
        self.reached = asyncio.Event()

    def on_publication(self, channel: str, publication: Publication, position: StreamPosition) -> None:
        self.received += 1
        if self.target and self.received >= self.target:
            self.reached.set()

    def on_join(self, channel: str, info: ClientInfo) -> None:
        return None

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        return None

    def on_control(self, payload: bytes) -> None:
        return None


async def rate(seconds: float, batch: int, operation: Callable[[int], Awaitable[object]]) -> float:
    """Operations per second: ``batch`` concurrent operations at a time, for about ``seconds``."""
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        if batch == 1:
            await operation(done)
        else:
            await asyncio.gather(*(operation(done + i) for i in range(batch)))
        done += batch
    return done / elapsed


async def measure(
    publisher: Engine, subscriber: Engine, counter: Counter, seconds: float
) -> dict[str, float]:
    results: dict[str, float] = {}

    async def publish(n: int) -> object:
        return await publisher.publish("bench:chat", DATA, info=INFO, history=HISTORY)

    async def publish_fanned_out(n: int) -> object:
        return await publisher.publish("bench:room", DATA, info=INFO, history=HISTORY)

    async def read_recent(n: int) -> object:
        return await publisher.history("bench:chat", since=since, limit=10)

    results["publish_per_s"] = await rate(seconds, 1, publish)
    results["publish_concurrent_64_per_s"] = await rate(seconds, 64, publish)

    _, top = await publisher.history("bench:chat")
    since = StreamPosition(top.offset - 10, top.epoch)
    results["history_recover_10_per_s"] = await rate(seconds, 1, read_recent)
    results["history_recover_10_concurrent_64_per_s"] = await rate(seconds, 64, read_recent)

    # Publish and deliver to a subscribed node: count until every publication has arrived.
    await subscriber.subscribe("bench:room")
    counter.received, counter.reached = 0, asyncio.Event()
    started = time.perf_counter()
    sent = 0
    while time.perf_counter() - started < seconds:
        await asyncio.gather(*(publish_fanned_out(i) for i in range(64)))
        sent += 64
    counter.target = sent
    if counter.received < sent:
        await asyncio.wait_for(counter.reached.wait(), timeout=30)
    results["publish_and_deliver_per_s"] = sent / (time.perf_counter() - started)
    await subscriber.unsubscribe("bench:room")
    return results


async def run(seconds: float, redis_url: str) -> dict[str, Any]:
    memory_counter = Counter()
    memory = MemoryEngine()
    await memory.start(memory_counter)
    try:
        memory_results = await measure(memory, memory, memory_counter, seconds)
    finally:
        await memory.close()

    # Two Redis engines: one publishes, the other ("another pod") receives.
    prefix = f"bench{int(time.time())}"
    publisher, subscriber, counter = (
        RedisEngine(redis_url, prefix=prefix),
        RedisEngine(redis_url, prefix=prefix),
        Counter(),
    )
    await publisher.start(Counter())
    await subscriber.start(counter)
    try:
        redis_results = await measure(publisher, subscriber, counter, seconds)
    finally:
        await publisher.client.delete(f"{prefix}.stream.bench:chat", f"{prefix}.meta.bench:chat")
        await publisher.client.delete(f"{prefix}.stream.bench:room", f"{prefix}.meta.bench:room")
        await publisher.close()
        await subscriber.close()

    return {
        "benchmark": "engines.publish",
        "seconds_per_measurement": seconds,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "memory": memory_results,
        "redis": redis_results,
        "ratio_memory_over_redis": {k: memory_results[k] / redis_results[k] for k in memory_results},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=0.5, help="length of each measurement")
    parser.add_argument("--redis-url", help="an existing Redis (default: start a private one)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    server = None
    redis_url = args.redis_url
    if redis_url is None:
        from tests.harness.redis import RedisServer  # the same real redis-server the tests use

        server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-redis-"))).start()
        redis_url = server.url
    try:
        results = asyncio.run(run(args.seconds, redis_url))
    finally:
        if server is not None:
            server.stop()

    print(f"{'operation':42} {'memory/s':>12} {'redis/s':>12} {'ratio':>8}")
    for key, ratio in results["ratio_memory_over_redis"].items():
        print(f"{key:42} {results['memory'][key]:12,.0f} {results['redis'][key]:12,.0f} {ratio:8.1f}")
    write_results(args.output, results)
    return 0


def write_results(path: Path, results: dict[str, Any]) -> None:
    """``results`` as JSON at ``path`` (under the git-ignored bench/results/)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    sys.exit(main())
