"""Soak: steady load on two real workers sharing one real Redis (AOF on), with
faults on a schedule - a worker killed with SIGKILL (its clients move to the
other through a loopback relay, and it is started again), then Redis stopped
and started - while real centrifuge-python clients receive a numbered stream
published through the server API. A third worker on the same Redis is never
killed: its own clients ride out only the Redis restarts, and its memory is one
series over the whole run (the killed workers' series last one incarnation).

With ``--neo4j`` (the default) the workers also run the living core's projector into a real
Neo4j reached through a ``FaultProxy``, a client reports emotional states all
along, and a third fault joins the schedule: Neo4j hung for 25 s (every byte
held). The report then says how many states were reported, how many events the
workers could not append (Redis restarting), and how many reached the graph.

Reports messages sent, acknowledged, received and lost among acknowledged
(must be 0), failed publish attempts, recoveries, and the resident memory of
each worker over time (first, last, max and the least-squares slope). Loopback
only; bounded by ``--minutes``; writes ``bench/results/soak.json``.

    .venv/bin/python -m bench.soak.run --minutes 10 [--no-neo4j]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import centrifuge

from tests.harness.faults import FaultProxy, Ledger, LedgerSubscriber, stream_namespaces, wait_complete
from tests.harness.neo4j import Neo4jServer
from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess
from tests.worker.engines.test_two_workers import Relay

RESULTS = Path(__file__).resolve().parents[1] / "results" / "soak.json"
CHANNEL = "stream:soak"
REPORTER = "soak-reporter"
NEO4J_STALL_S = 25.0


def rss_mib(pid: int) -> float | None:
    """Resident set size of a process, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Soak:
    def __init__(
        self,
        workdir: Path,
        *,
        minutes: float,
        clients: int,
        rate: float,
        steady_clients: int = 4,
        neo4j: bool = False,
    ) -> None:
        self.workdir = workdir
        self.duration = minutes * 60
        self.client_count = clients
        self.steady_client_count = steady_clients
        self.interval = 1.0 / rate
        self.redis = RedisServer(workdir / "redis", persistence=True)
        self.neo4j = Neo4jServer(workdir / "neo4j") if neo4j else None
        self.neo4j_proxy: FaultProxy | None = None
        self.states_reported = 0
        self.states_refused = 0
        self.ledger = Ledger()
        self.faults: list[dict[str, Any]] = []
        self.memory: list[dict[str, Any]] = []
        self.clients: list[centrifuge.Client] = []
        self.retries = 0
        self.t0 = 0.0
        self.incarnation: dict[str, int] = {}
        self.restarting: set[str] = set()  # not sampled until ready again

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    async def run(self) -> dict[str, Any]:
        self.redis.start()
        env = {
            "RESONANCE_ENGINE": "redis",
            "RESONANCE_REDIS_URL": self.redis.url,
            "RESONANCE_NAMESPACES": stream_namespaces(history_size=1_000_000),
            "RESONANCE_LIMITS__USER_PUBLISH_RATE": "0",
            "RESONANCE_LOG_LEVEL": "WARNING",
        }
        if self.neo4j is not None:
            await asyncio.to_thread(self.neo4j.start)
            self.neo4j_proxy = await FaultProxy(self.neo4j.port).start()
            env |= {
                "RESONANCE_NEO4J__URI": f"bolt://127.0.0.1:{self.neo4j_proxy.port}",
                "RESONANCE_NEO4J__USER": self.neo4j.user,
                "RESONANCE_NEO4J__PASSWORD": self.neo4j.password,
            }
        self.workers = [
            WorkerProcess(self.workdir, env, name="soak-a").start(),
            WorkerProcess(self.workdir, env, name="soak-b").start(),
        ]
        self.steady = WorkerProcess(self.workdir, env, name="soak-steady").start()
        self.front = 0  # the worker the relay sends clients to; the publisher uses the other
        self.relay = await Relay(self.workers[0].port).start()
        try:
            await self._subscribe()
            self.t0 = time.monotonic()
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(self._publish(stop)),
                asyncio.create_task(self._sample_memory(stop)),
            ]
            if self.neo4j is not None:
                tasks.append(asyncio.create_task(self._report_states(stop)))
            await self._inject_faults()
            stop.set()
            await asyncio.gather(*tasks)
            complete = await wait_complete(self.ledger, timeout=60)
            graph = await self._graph_caught_up() if self.neo4j is not None else None
        finally:
            for client in self.clients:
                await client.disconnect()
            await self.relay.close()
            for worker in [*self.workers, self.steady]:
                worker.stop()
            self.redis.stop()
            if self.neo4j_proxy is not None:
                await self.neo4j_proxy.close()
            if self.neo4j is not None:
                await asyncio.to_thread(self.neo4j.stop)
        return self._report(complete, graph)

    async def _subscribe(self) -> None:
        worker = self.workers[0]
        names = [(self.relay.ws_url, f"soak-{i}") for i in range(self.client_count)]
        names += [(self.steady.ws_url, f"steady-{i}") for i in range(self.steady_client_count)]
        for url, name in names:
            client = centrifuge.Client(
                url,
                token=worker.token(name, ttl=24 * 3600),
                min_reconnect_delay=0.3,
                max_reconnect_delay=2.0,
            )
            self.clients.append(client)
            await client.connect()
            await client.ready(timeout=10)
            sub = client.new_subscription(CHANNEL, events=LedgerSubscriber(self.ledger, name))
            await sub.subscribe()
            await sub.ready(timeout=10)

    async def _publish(self, stop: asyncio.Event) -> None:
        """Numbered messages at a steady rate; a refused one is retried (same number) until
        acknowledged, as an application back end would."""
        n = 0
        while not stop.is_set():
            n += 1
            self.ledger.sent += 1
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                worker = self.workers[1 - self.front]
                status, _ = await asyncio.to_thread(
                    worker.api, "publish", {"channel": CHANNEL, "data": {"n": n}, "idempotency_key": f"n{n}"}
                )
                if status == 200:
                    self.ledger.acked.append(n)
                    break
                self.retries += 1
                await asyncio.sleep(0.1)
            else:
                self.ledger.failed += 1
            await asyncio.sleep(self.interval)

    async def _report_states(self, stop: asyncio.Event) -> None:
        """A person reporting a state every half second to the never-killed worker: events for the
        projector, whatever Neo4j is doing."""
        client = centrifuge.Client(
            self.steady.ws_url,
            token=self.steady.token(REPORTER, ttl=24 * 3600),
            min_reconnect_delay=0.3,
            max_reconnect_delay=2.0,
        )
        self.clients.append(client)
        await client.connect()
        await client.ready(timeout=10)
        while not stop.is_set():
            try:
                await client.rpc("state.report", {"valence": 0.5, "arousal": 0.5})
                self.states_reported += 1
            except centrifuge.CentrifugeError:
                self.states_refused += 1  # e.g. the thyroid shed or limited it: counted, not lost
            await asyncio.sleep(0.5)

    def _states_in_graph(self) -> int:
        import neo4j

        assert self.neo4j is not None
        with neo4j.GraphDatabase.driver(self.neo4j.uri, auth=self.neo4j.auth) as driver:
            records, _, _ = driver.execute_query(
                "MATCH (s:State {user_id: $user}) RETURN count(s) AS n", {"user": REPORTER}
            )
            return int(records[0]["n"])

    def _appends_failed(self) -> int:
        return sum(
            1
            for worker in [*self.workers, self.steady]
            for record in worker.log_records()
            if record.get("msg") == "event not appended" and record.get("event") == "state_changed"
        )

    async def _graph_caught_up(self, timeout: float = 180.0) -> dict[str, Any]:
        """Wait until every state the workers appended is in the graph (or time runs out)."""
        started = time.monotonic()
        expected = self.states_reported - await asyncio.to_thread(self._appends_failed)
        projected = 0
        while time.monotonic() - started < timeout:
            projected = await asyncio.to_thread(self._states_in_graph)
            if projected >= expected:
                break
            await asyncio.sleep(1.0)
        return {
            "states_reported": self.states_reported,
            "states_refused": self.states_refused,
            "appends_failed": self.states_reported - expected,
            "states_projected": projected,
            "caught_up": projected == expected,
            "catch_up_s": round(time.monotonic() - started, 1),
        }

    async def _sample_memory(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            sample: dict[str, Any] = {"t": self.now()}
            for worker in [*self.workers, self.steady]:
                if worker.process.alive() and worker.name not in self.restarting:
                    # Keyed by incarnation: a restarted worker starts a new series.
                    key = f"{worker.name}#{self.incarnation.get(worker.name, 1)}"
                    sample[key] = rss_mib(worker.process.pid)
            if self.redis.process.alive():
                sample["redis"] = rss_mib(self.redis.process.pid)
            self.memory.append(sample)
            await asyncio.sleep(5)

    async def _inject_faults(self) -> None:
        """A fault every period, alternating a worker SIGKILL and a Redis restart."""
        period = max(20.0, self.duration / 10)
        kinds = ["worker_kill", "redis_restart"]
        if self.neo4j is not None:
            kinds.append("neo4j_stall")
        index = 0
        while self.now() + period <= self.duration:
            await asyncio.sleep(period)
            kind = kinds[index % len(kinds)]
            index += 1
            started = self.now()
            if kind == "worker_kill":
                victim = self.workers[self.front]
                self.restarting.add(victim.name)
                victim.kill()
                self.incarnation[victim.name] = self.incarnation.get(victim.name, 1) + 1
                self.front = 1 - self.front
                self.relay.switch(self.workers[self.front].port)
                await asyncio.to_thread(victim.start)  # same port; clients are elsewhere now
                self.restarting.discard(victim.name)
                detail = victim.name
            elif kind == "redis_restart":
                await asyncio.to_thread(self.redis.restart)
                detail = "SIGTERM, then start on the same port and AOF"
            else:
                assert self.neo4j_proxy is not None
                self.neo4j_proxy.stall()
                await asyncio.sleep(NEO4J_STALL_S)
                self.neo4j_proxy.resume()
                detail = f"every Bolt byte held for {NEO4J_STALL_S:g} s"
            self.faults.append({"t": started, "kind": kind, "detail": detail, "took_s": self.now() - started})
        await asyncio.sleep(max(0.0, self.duration - self.now()))

    def _report(self, complete: bool, graph: dict[str, Any] | None) -> dict[str, Any]:
        growth = {}
        names = sorted({key for sample in self.memory for key in sample if key != "t"})
        for name in names:
            points = [(s["t"], s[name]) for s in self.memory if s.get(name) is not None]
            if points:
                (t_first, first), (t_last, last) = points[0], points[-1]
                growth[name] = {
                    "from_s": t_first,
                    "to_s": t_last,
                    "first_mib": round(first, 1),
                    "last_mib": round(last, 1),
                    "max_mib": round(max(v for _, v in points), 1),
                    "growth_mib": round(last - first, 1),
                    "slope_mib_per_min": round(slope(points) * 60, 3),
                }
        return {
            "minutes": round(self.duration / 60, 2),
            "clients": self.client_count,
            "steady_clients": self.steady_client_count,
            "target_rate_per_s": round(1 / self.interval, 1),
            "achieved_rate_per_s": round(len(self.ledger.acked) / max(self.duration, 1), 1),
            "complete": complete,
            **self.ledger.summary(),
            "publish_retries": self.retries,
            "graph": graph,
            "faults": self.faults,
            "memory_mib": growth,
            "memory_series": self.memory,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        }


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value) points, per second; 0 for fewer than two times."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


async def _run(soak: Soak) -> dict[str, Any]:
    def quiet_cancellations(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # The relay's pipes are cancelled when the run ends; that is not a finding.
        if not isinstance(context.get("exception"), asyncio.CancelledError):
            loop.default_exception_handler(context)

    asyncio.get_running_loop().set_exception_handler(quiet_cancellations)
    return await soak.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8, help="clients behind the relay (moved on kills)")
    parser.add_argument("--steady-clients", type=int, default=4, help="clients of the never-killed worker")
    parser.add_argument("--rate", type=float, default=50.0, help="publications per second")
    parser.add_argument(
        "--neo4j",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also project into a real Neo4j that is hung on the schedule (default: on)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        result = asyncio.run(
            _run(
                Soak(
                    Path(workdir),
                    minutes=args.minutes,
                    clients=args.clients,
                    rate=args.rate,
                    steady_clients=args.steady_clients,
                    neo4j=args.neo4j,
                )
            )
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k != "memory_series"}
    print(json.dumps(summary, indent=2))
    graph = result["graph"]
    if result["lost_among_acknowledged"] or not result["complete"] or (graph and not graph["caught_up"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
