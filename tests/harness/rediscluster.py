"""A real six-node Redis Cluster (three primaries, three replicas) on loopback.

Six Debian ``redis-server`` processes in cluster mode, joined by ``redis-cli --cluster create`` exactly as
an operator would do it by hand. ``kill_primary`` sends SIGKILL to the primary serving a key's slot;
``wait_for_failover`` returns once a replica has taken its slots over and every live node reports
``cluster_state:ok``. Each node's cluster-bus port is chosen free too, rather than port + 10000.

Synchronous, like the rest of the harness: from an async test, run the waits in ``asyncio.to_thread``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

import redis
import redis.asyncio

from tests.harness.processes import free_port
from tests.harness.redis import RedisServer, redis_binary
from tests.harness.sentinel import Address, admin, wait_for
from tests.harness.tls import TlsFiles


class RedisClusterNodes:
    """``primaries`` × (1 + ``replicas_per_primary``) nodes forming one Cluster, all slots covered."""

    def __init__(
        self,
        workdir: Path,
        *,
        primaries: int = 3,
        replicas_per_primary: int = 1,
        node_timeout_ms: int = 2000,
        password: str | None = None,
        tls: TlsFiles | None = None,
        require_full_coverage: bool = True,
    ) -> None:
        self.workdir = workdir
        self.password = password
        self.tls = tls
        self.primaries_wanted = primaries
        self.replicas_per_primary = replicas_per_primary
        self.nodes: list[RedisServer] = []
        for i in range(primaries * (1 + replicas_per_primary)):
            node_dir = workdir / f"node{i}"
            args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", str(node_timeout_ms),
                "--cluster-port", str(free_port()),
                # A replica takes over however long it was cut off: tests kill primaries on purpose.
                "--cluster-replica-validity-factor", "0",
                "--repl-diskless-sync-delay", "0",
                # "no": the other shards keep serving while one slot has no primary (Redis's default
                # "yes" refuses every command cluster-wide then; docs/reliability.md, "Redis Cluster").
                "--cluster-require-full-coverage", "yes" if require_full_coverage else "no",
            ]  # fmt: skip
            if tls is not None:
                args += ["--tls-cluster", "yes"]  # the cluster bus over TLS too
            self.nodes.append(
                RedisServer(node_dir, config_file=True, password=password, extra_args=args, tls=tls)
            )

    # --- life cycle --------------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> RedisClusterNodes:
        """Start the nodes, create the Cluster with ``redis-cli --cluster create``, wait until it is whole."""
        for node in self.nodes:
            node.start()
        if self.primaries_wanted < 3:
            self._create_small()
            self.wait_healthy(timeout=timeout)
            return self
        argv = [redis_binary("redis-cli"), "--cluster", "create"]
        argv += [f"{n.host}:{n.port}" for n in self.nodes]
        argv += ["--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes"]
        if self.tls is not None:
            argv += ["--tls", "--cacert", str(self.tls.ca)]
        env = {"REDISCLI_AUTH": self.password} if self.password is not None else None
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        (self.workdir / "create.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0 or "[OK] All 16384 slots covered" not in result.stdout:
            output = f"{result.stdout}\n{result.stderr}"
            raise RuntimeError(f"redis-cli --cluster create failed ({result.returncode}):\n{output}")
        self.wait_healthy(timeout=timeout)
        return self

    def _create_small(self) -> None:
        """``redis-cli --cluster create`` wants three primaries; fewer (a one-shard baseline for
        benchmarks) are joined by hand: slots split evenly with ``CLUSTER ADDSLOTSRANGE``, the other nodes
        met and made replicas with ``CLUSTER MEET`` and ``CLUSTER REPLICATE``."""
        primaries = self.nodes[: self.primaries_wanted]
        step = 16384 // len(primaries)
        for i, node in enumerate(primaries):
            last = 16383 if i == len(primaries) - 1 else (i + 1) * step - 1
            self.client(node).execute_command("CLUSTER ADDSLOTSRANGE", i * step, last)
        first = self.client(self.nodes[0])
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER MEET", node.host, node.port, self._bus_port(node))
        ids = {n.port: self.client(n).execute_command("CLUSTER MYID") for n in primaries}
        wait_for(
            lambda: all(len(self.client(n).cluster("nodes")) == len(self.nodes) for n in self.nodes),
            timeout=30,
            what="every node meeting the others",
        )
        for i, node in enumerate(self.nodes[len(primaries) :]):
            owner_id = ids[primaries[i % len(primaries)].port]
            # Until gossip has told this node the primary's id, REPLICATE answers "Unknown node": retry.
            wait_for(
                lambda n=node, o=owner_id: bool(self.client(n).execute_command("CLUSTER REPLICATE", o)),
                timeout=30,
                what=f"{node.port} replicating {owner_id}",
            )

    @staticmethod
    def _bus_port(node: RedisServer) -> int:
        argv = node.process.argv
        return int(argv[argv.index("--cluster-port") + 1])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    # --- what the nodes say ------------------------------------------------------------------------------

    def client(self, node: RedisServer) -> redis.Redis:
        return admin(node.host, node.port, self.password, self.tls)

    def async_client(self) -> redis.asyncio.RedisCluster:
        """An asyncio Cluster client (found from the first node), for tests that look at keys directly."""
        host, port = self.startup_nodes[0]
        return redis.asyncio.RedisCluster(host=host, port=port, password=self.password)

    @property
    def startup_nodes(self) -> list[Address]:
        return [n.address for n in self.nodes]

    @property
    def url(self) -> str:
        """A ``redis://`` URL of one node: a Cluster client discovers the others from it."""
        return self.nodes[0].url

    def live(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.process.alive()]

    def slot_owners(self) -> dict[Address, list[tuple[int, int]]]:
        """Primary address → the slot ranges it serves, as a live node sees the Cluster."""
        owners: dict[Address, list[tuple[int, int]]] = {}
        asked = self.live()[0]
        for start, end, primary, *_replicas in self.client(asked).execute_command("CLUSTER SLOTS"):
            # A node that never met another does not know its own IP and reports "".
            address = (str(primary[0]) or asked.host, int(primary[1]))
            owners.setdefault(address, []).append((int(start), int(end)))
        return owners

    def primaries(self) -> list[RedisServer]:
        return [self._node_at(address) for address in self.slot_owners()]

    def primary_for(self, key: str) -> RedisServer:
        """The primary serving ``key``'s slot (hash tags honoured)."""
        slot = int(self.client(self.live()[0]).execute_command("CLUSTER KEYSLOT", key))
        for address, ranges in self.slot_owners().items():
            if any(start <= slot <= end for start, end in ranges):
                return self._node_at(address)
        raise RuntimeError(f"slot {slot} of {key!r} is not served")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """A replica of ``primary`` (by ``ROLE``: ``["slave", primary host, primary port, ...]``)."""
        for node in self.live():
            if node is primary:
                continue
            role = self.client(node).execute_command("ROLE")
            if role[0] in ("slave", b"slave") and int(role[2]) == primary.port:
                return node
        raise RuntimeError(f"{primary.port} has no replica")

    def _node_at(self, address: Address) -> RedisServer:
        return next(n for n in self.nodes if n.address == address)

    # --- faults and waits --------------------------------------------------------------------------------

    def kill_primary(self, key: str) -> RedisServer:
        """SIGKILL the primary serving ``key``; return it."""
        node = self.primary_for(key)
        node.kill()
        return node

    def wait_for_failover(self, killed: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until another node serves ``killed``'s slots and every live node says the Cluster is ok."""

        def taken_over() -> bool:
            if killed.address in self.slot_owners():
                return False
            return self._all_ok(self.live())

        wait_for(taken_over, timeout=timeout, what=f"failover away from {killed.port}", interval=0.2)
        return self.primaries()[0]

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Every node is up, agrees on the slot map and reports ``cluster_state:ok``, all slots served."""
        expected_primaries = self.primaries_wanted

        def healthy() -> bool:
            live = self.live()
            if len(live) != len(self.nodes) or not self._all_ok(live):
                return False
            epochs = {self.client(n).cluster("info")["cluster_current_epoch"] for n in live}
            return len(epochs) == 1 and len(self.slot_owners()) == expected_primaries

        wait_for(healthy, timeout=timeout, what="a whole, agreed Cluster", interval=0.2)

    def _all_ok(self, nodes: Iterable[RedisServer]) -> bool:
        for node in nodes:
            info = self.client(node).cluster("info")
            if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384:
                return False
        return True
