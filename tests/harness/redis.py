"""A real ``redis-server`` (Debian's) on a free loopback port."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.harness.processes import ServiceProcess, free_port, port_open


class RedisServer:
    """A fresh, empty Redis for one test run; optional AOF persistence."""

    def __init__(self, workdir: Path, *, port: int | None = None, persistence: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run `make deps` (apt-get install redis-server)")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(workdir),
            "--save", "",
            "--appendonly", "yes" if persistence else "no",
            "--protected-mode", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = ServiceProcess(f"redis:{self.port}", argv, log_path=workdir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

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
