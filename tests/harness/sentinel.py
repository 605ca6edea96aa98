"""A real replicated Redis watched by real ``redis-sentinel`` processes, all on loopback.

One primary, ``replicas`` replicas and ``sentinels`` Sentinels (Debian's ``redis-server`` and
``redis-sentinel``), each node started from its own ``redis.conf`` so Sentinel can rewrite it when it
reconfigures the node. Faults are real: ``kill_primary`` sends SIGKILL (a crash: the replicas have
what reached them, nothing more), ``pause_primary`` sends SIGSTOP (a hung primary: no error, no
reset). ``wait_for_failover`` returns once every Sentinel names the same new primary and that node
says it is a primary; ``restart`` brings a killed node back, and Sentinel turns it into a replica of
the new primary.

Synchronous, like the rest of the harness: from an async test, run the waits in
``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from tests.harness.processes import ServiceProcess, free_port, port_open
from tests.harness.redis import RedisServer, redis_binary
from tests.harness.tls import TlsFiles

Address = tuple[str, int]


def admin(host: str, port: int, password: str | None = None, tls: TlsFiles | None = None) -> redis.Redis:
    """A short-lived synchronous client with tight timeouts, for probing a node or a Sentinel (over TLS,
    verified by ``tls.ca``, when the deployment speaks TLS)."""
    options: dict[str, object] = {} if tls is None else {"ssl": True, "ssl_ca_certs": str(tls.ca)}
    return redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        decode_responses=True,
        **options,  # type: ignore[arg-type]
    )


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``check`` (errors count as "not yet") until it holds, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError) as exc:
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise TimeoutError(f"no {what} within {timeout:.0f} s{detail}")


class SentinelServer:
    """One ``redis-sentinel`` process with its own writable ``sentinel.conf``."""

    def __init__(
        self,
        workdir: Path,
        *,
        service: str,
        primary: Address,
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
        password: str | None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        self.tls = tls
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "sentinel.conf"
        lines = [
            f"bind {self.host}",
            *(
                [f"port {self.port}"]
                if tls is None
                else [
                    "port 0",
                    f"tls-port {self.port}",
                    f"tls-cert-file {tls.cert}",
                    f"tls-key-file {tls.key}",
                    f"tls-ca-cert-file {tls.ca}",
                    "tls-auth-clients no",
                    "tls-replication yes",  # reach the Redis nodes (and the other Sentinels) over TLS
                ]
            ),
            f"dir {workdir}",
            "protected-mode no",
            "daemonize no",
            f"sentinel monitor {service} {primary[0]} {primary[1]} {quorum}",
            f"sentinel down-after-milliseconds {service} {down_after_ms}",
            f"sentinel failover-timeout {service} {failover_timeout_ms}",
            f"sentinel parallel-syncs {service} 1",
        ]
        if password is not None:
            lines.append(f"sentinel auth-pass {service} {password}")
        conf.write_text("\n".join(lines) + "\n")
        argv = [redis_binary("redis-sentinel"), str(conf)]
        self.process = ServiceProcess(f"sentinel:{self.port}", argv, log_path=workdir / "sentinel.log")

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def start(self, timeout: float = 20.0) -> SentinelServer:
        self.process.start()
        self.process.wait_until(lambda: port_open(self.host, self.port), timeout=timeout, what="open port")
        return self

    def stop(self) -> None:
        self.process.stop()

    def client(self) -> redis.Redis:
        return admin(self.host, self.port, tls=self.tls)


class SentinelRedis:
    """A primary, its replicas and the Sentinels watching them, as one service named ``service``.

    Defaults are quick for tests (a node is judged down after 1 s); the operator's production values are
    its own. ``node_args`` go to every data node (e.g. ``["--appendonly", "yes"]``,
    ``["--min-replicas-to-write", "1"]``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        quorum: int = 2,
        service: str = "resonance",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        password: str | None = None,
        persistence: bool = False,
        node_args: Sequence[str] = (),
        tls: TlsFiles | None = None,
    ) -> None:
        self.workdir = workdir
        self.service = service
        self.password = password
        self.tls = tls
        self.nodes = [
            RedisServer(
                workdir / f"node{i}",
                persistence=persistence,
                config_file=True,
                password=password,
                tls=tls,
                # A replica's full sync starts at once rather than after Redis' default 5 s wait for others.
                extra_args=["--repl-diskless-sync-delay", "0", *node_args],
            )
            for i in range(replicas + 1)
        ]
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.process.argv += ["--replicaof", first.host, str(first.port)]
        self.sentinels = [
            SentinelServer(
                workdir / f"sentinel{i}",
                service=service,
                primary=first.address,
                quorum=quorum,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                password=password,
                tls=tls,
            )
            for i in range(sentinels)
        ]

    # --- life cycle --------------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> SentinelRedis:
        """Start every node and Sentinel; return once the replicas are linked and every Sentinel sees all."""
        for node in self.nodes:
            node.start()
        self.wait_replicas_linked(timeout=timeout)
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_sentinels_settled(timeout=timeout)
        return self

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            with contextlib.suppress(Exception):
                process.process.signal(signal.SIGCONT)  # a paused node must be able to exit
            process.stop()

    # --- what the Sentinels say --------------------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> list[Address]:
        return [s.address for s in self.sentinels]

    def node_client(self, node: RedisServer) -> redis.Redis:
        return admin(node.host, node.port, self.password, self.tls)

    def primary_address(self) -> Address:
        """The primary most live Sentinels name right now."""
        votes: Counter[Address] = Counter()
        for sentinel in self.sentinels:
            if not sentinel.process.alive():
                continue
            with contextlib.suppress(redis.RedisError, OSError):
                answer = sentinel.client().sentinel_get_master_addr_by_name(self.service)
                if answer:
                    votes[(str(answer[0]), int(answer[1]))] += 1
        if not votes:
            raise RuntimeError(f"no Sentinel names a primary for {self.service!r}")
        return votes.most_common(1)[0][0]

    def node_at(self, address: Address) -> RedisServer:
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(f"no node of this deployment listens on {address}")

    def primary(self) -> RedisServer:
        return self.node_at(self.primary_address())

    def role(self, node: RedisServer) -> str:
        """``master`` or ``slave``, as the node itself says."""
        return str(self.node_client(node).role()[0])

    # --- faults -----------------------------------------------------------------------------------------

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary (a crash); return it, for ``restart`` later."""
        node = self.primary()
        node.kill()
        return node

    def pause_primary(self) -> RedisServer:
        """SIGSTOP the current primary (hung: connections open, nothing answers); ``resume`` undoes it."""
        node = self.primary()
        node.process.signal(signal.SIGSTOP)
        return node

    def resume(self, node: RedisServer) -> None:
        node.process.signal(signal.SIGCONT)

    def pause_replicas(self) -> list[RedisServer]:
        """SIGSTOP every replica: the primary keeps answering while its replication stream piles up.

        With large enough writes the kernel's socket buffers fill and the rest waits in the primary's
        own memory, which a SIGKILL of the primary then loses: a lagging replication link, on demand.
        """
        primary = self.primary_address()
        paused = [n for n in self.nodes if n.process.alive() and n.address != primary]
        for node in paused:
            node.process.signal(signal.SIGSTOP)
        return paused

    def restart(self, node: RedisServer, timeout: float = 30.0) -> None:
        """Start a killed node again; return once Sentinel has made it a linked replica of the primary."""
        if node.process.alive():
            node.stop()
        # As a managed pod's start script does: ask the Sentinels for the primary and start as its replica,
        # rather than as a stale primary that Sentinel has to notice and convert (≈ 15 s slower here).
        host, port = self.primary_address()
        argv = node.process.argv
        if "--replicaof" in argv:
            at = argv.index("--replicaof")
            del argv[at : at + 3]
        argv += ["--replicaof", host, str(port)]
        node.start()
        wait_for(
            lambda: node.address != self.primary_address() and self._linked(node),
            timeout=timeout,
            what=f"{node.port} back as a linked replica",
        )

    # --- waits -------------------------------------------------------------------------------------------

    def wait_for_failover(self, old: Address, timeout: float = 30.0) -> Address:
        """Wait until every live Sentinel names one new primary (not ``old``) acting as one; return it."""

        def settled() -> bool:
            named = set()
            for sentinel in self.sentinels:
                if sentinel.process.alive():
                    answer = sentinel.client().sentinel_get_master_addr_by_name(self.service)
                    named.add((str(answer[0]), int(answer[1])) if answer else None)
            if len(named) != 1:
                return False
            (address,) = named
            return address is not None and address != old and self.role(self.node_at(address)) == "master"

        wait_for(settled, timeout=timeout, what=f"failover away from {old[0]}:{old[1]}")
        return self.primary_address()

    def _linked(self, node: RedisServer) -> bool:
        info = self.node_client(node).info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def wait_replicas_linked(self, timeout: float = 30.0) -> None:
        """Every node but the primary is a replica whose link is up and whose offset caught up."""

        def linked() -> bool:
            primary = next(n for n in self.nodes if n.process.alive() and self.role(n) == "master")
            top = int(self.node_client(primary).info("replication")["master_repl_offset"])
            for node in self.nodes:
                if node is primary or not node.process.alive():
                    continue
                info = self.node_client(node).info("replication")
                if info.get("master_link_status") != "up" or int(info.get("slave_repl_offset", -1)) < top:
                    return False
            return True

        wait_for(linked, timeout=timeout, what="replicas linked and caught up")

    def wait_sentinels_settled(self, timeout: float = 30.0) -> None:
        """Every Sentinel knows the primary, every live replica and every other Sentinel."""
        live_replicas = sum(1 for n in self.nodes if n.process.alive()) - 1
        others = len(self.sentinels) - 1

        def settled() -> bool:
            for sentinel in self.sentinels:
                state = sentinel.client().sentinel_master(self.service)
                if state.get("is_sdown") or state.get("is_odown"):
                    return False
                if int(state["num-slaves"]) < live_replicas or int(state["num-other-sentinels"]) < others:
                    return False
            return True

        wait_for(settled, timeout=timeout, what="Sentinels agreeing on the primary, replicas and each other")
