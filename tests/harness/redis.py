"""A real ``redis-server`` (Debian's) on a free loopback port."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from tests.harness.processes import ServiceProcess, free_port, port_open
from tests.harness.tls import TlsFiles


def redis_binary(name: str = "redis-server") -> str:
    """The path of a Redis program, or a clear error naming the package that brings it."""
    binary = shutil.which(name)
    if binary is None:
        package = "redis-sentinel" if name == "redis-sentinel" else "redis-server"
        raise RuntimeError(f"{name} not found: run `make deps` (apt-get install {package})")
    return binary


class RedisServer:
    """A fresh, empty Redis for one test run; optional AOF persistence.

    ``extra_args`` are more ``--option value`` pairs (replication, cluster mode, auth). With
    ``config_file`` the server is started from a (first empty) ``redis.conf`` in ``workdir``, so that
    ``CONFIG REWRITE`` works: Sentinel rewrites the configuration of the nodes it reconfigures, and a
    Cluster node keeps its own ``nodes.conf`` beside it. With ``tls`` the server speaks only TLS (its
    plain port is closed), clients need not present a certificate, and ``url`` is ``rediss://``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistence: bool = False,
        extra_args: Sequence[str] = (),
        config_file: bool = False,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        binary = redis_binary()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = workdir
        self.password = password
        self.tls = tls
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [binary]
        if config_file:
            conf = workdir / "redis.conf"
            if not conf.exists():
                conf.write_text("# written by CONFIG REWRITE; the command line sets the rest\n")
            argv.append(str(conf))
        ports = ["--port", str(self.port)]
        if tls is not None:
            ports = [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(tls.cert),
                "--tls-key-file", str(tls.key),
                "--tls-ca-cert-file", str(tls.ca),
                "--tls-auth-clients", "no",
                "--tls-replication", "yes",
            ]  # fmt: skip
        argv += [
            "--bind", self.host,
            *ports,
            "--dir", str(workdir),
            "--save", "",
            "--appendonly", "yes" if persistence else "no",
            "--protected-mode", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        if password is not None:
            argv += ["--requirepass", password, "--masterauth", password]
        argv += list(extra_args)
        self.process = ServiceProcess(f"redis:{self.port}", argv, log_path=workdir / "redis.log")

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://{auth}{self.host}:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self, timeout: float = 20.0) -> RedisServer:
        self.process.start()
        self.process.wait_until(lambda: port_open(self.host, self.port), timeout=timeout, what="open port")
        return self

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def restart(self, timeout: float = 20.0) -> None:
        """Stop and start again on the same port (and the same data, when persistent)."""
        self.stop()
        self.start(timeout)
