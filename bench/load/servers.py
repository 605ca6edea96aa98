"""Servers the benchmark starts on loopback — Centrifugo (memory or Redis engine), Redis, our worker — and
always stops again. Each is a child process in its own session, killed by its pid."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench.centrifugo.config import Engine, centrifugo_config
from bench.load.scenario import Target

REPO = Path(__file__).resolve().parents[2]
CENTRIFUGO_VERSION = "6.9.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until(
    check: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what}: exited with {process.returncode} before it was ready")
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not ready within {timeout} s")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def worker_settled(url: str) -> bool:
    """A worker's ``/ready`` (``url``) answers 200 and its background biometrics warm-up is over: SciPy adds
    about 66 MiB and seconds of CPU, which a measurement taken while ``warming`` would miss or be charged."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            body = json.loads(response.read()) if response.status == 200 else None
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("biometrics") != "warming"


def listening_sockets(port: int, tcp_table: str) -> int:
    """How many sockets listen on ``port`` in the text of /proc/net/tcp (several with ``SO_REUSEPORT``)."""
    count = 0
    for line in tcp_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
            count += 1
    return count


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def _forked_and_listening(pid: int, port: int, processes: int) -> bool:
    """``processes`` children of ``pid``, each listening on ``port``."""
    with open("/proc/net/tcp") as table:
        return listening_sockets(port, table.read()) >= processes and len(_children(pid)) == processes


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class Server:
    """A child process started with its CPUs pinned and the descriptor limit raised; stopped by pid."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: dict[str, str] | None = None,
        cpus: frozenset[int] | None = None,
        nice: int = 0,
    ) -> None:
        self.name = name
        self.log = log
        log_file = log.open("wb")

        def prepare() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)
            if nice:
                os.nice(nice)
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

        self.process = subprocess.Popen(
            list(argv),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=prepare,
            start_new_session=True,
        )
        log_file.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def centrifugo_binary() -> Path:
    """The cached build (``bench/centrifugo/build`` builds it on first use)."""
    script = REPO / "bench" / "centrifugo" / "build"
    out = subprocess.run([str(script)], check=True, capture_output=True, text=True, timeout=1800)
    return Path(out.stdout.strip().splitlines()[-1])


class Stack:
    """Every server of one target, started together and stopped together."""

    def __init__(self, workdir: Path, cpus: frozenset[int] | None, nice: int = 0) -> None:
        self.workdir = workdir
        self.cpus = cpus
        self.nice = nice
        self.servers: list[Server] = []
        self.engine_pids: list[int] = []  # the Redis servers this stack started
        workdir.mkdir(parents=True, exist_ok=True)

    def start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found (apt-get install redis-server)")
        port = free_port()
        argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                "--protected-mode", "no", "--dir", str(self.workdir)]  # fmt: skip
        server = Server(
            f"redis:{port}", argv, log=self.workdir / f"redis-{port}.log", cpus=self.cpus, nice=self.nice
        )
        self.servers.append(server)
        self.engine_pids.append(server.pid)
        _wait_until(lambda: _port_open(port), 20, server.name, server.process)
        return f"redis://127.0.0.1:{port}/0"

    def start_centrifugo(self, engine: Engine, *, nodes: int = 1, redis_url: str | None = None) -> Target:
        binary = centrifugo_binary()
        secret, api_key = secrets.token_hex(16), secrets.token_hex(16)
        if engine is Engine.REDIS and redis_url is None:
            redis_url = self.start_redis()
        urls, pids, api_url = [], [], None
        for node in range(nodes):
            port = free_port()
            config = centrifugo_config(
                port=port, token_secret=secret, api_key=api_key, engine=engine, redis_url=redis_url
            )
            path = self.workdir / f"centrifugo-{port}.json"
            path.write_text(json.dumps(config, indent=2))
            server = Server(
                f"centrifugo:{port}",
                [str(binary), "--config", str(path)],
                log=self.workdir / f"centrifugo-{port}.log",
                cpus=self.cpus,
                nice=self.nice,
            )
            self.servers.append(server)
            _wait_until(
                functools.partial(_http_ok, f"http://127.0.0.1:{port}/health"),
                30,
                server.name,
                server.process,
            )
            urls.append(f"ws://127.0.0.1:{port}/connection/websocket")
            pids.append(server.pid)
            if node == 0:
                api_url = f"http://127.0.0.1:{port}/api"
        suffix = f"-{nodes}nodes" if nodes > 1 else ""
        return Target(
            name=f"centrifugo-{engine.value}{suffix}",
            ws_urls=tuple(urls),
            api_url=api_url,
            api_key=api_key,
            token_secret=secret,
            server_pids=tuple(pids),
            engine_pids=tuple(self.engine_pids),
        )

    def start_worker(
        self,
        engine: Engine,
        *,
        nodes: int = 1,
        redis_url: str | None = None,
        source: Path | None = None,
        name: str = "worker",
        processes: int = 1,
    ) -> Target:
        """Our worker (``resonance-worker``), one process per node, with the server API enabled;
        ``processes`` > 1: that many forked processes per node sharing its port (``RESONANCE_PROCESSES``,
        the Redis engine only), measured as the forked processes (not their supervisor).

        Its connection limits are lifted (0 = unlimited) as Centrifugo has none by default: the load comes
        from a few loopback addresses, far over the per-IP default. ``source``: a checkout whose ``worker/``
        is run instead of the installed package (another commit, measured in the same run)."""
        secret, api_key = secrets.token_hex(16), secrets.token_hex(16)
        if engine is Engine.REDIS and redis_url is None:
            redis_url = self.start_redis()
        argv = [str(Path(sys.executable).parent / "resonance-worker")]
        if source is not None:
            argv = [sys.executable, "-m", "resonance_worker"]
        urls, pids, api_url = [], [], None
        for node in range(nodes):
            port = free_port()
            env = {
                "RESONANCE_HOST": "127.0.0.1",
                "RESONANCE_PORT": str(port),
                "RESONANCE_ENGINE": engine.value,
                "RESONANCE_JWT_SECRET": secret,
                "RESONANCE_LOG_JSON": "false",
                "RESONANCE_LOG_LEVEL": "WARNING",
                "RESONANCE_API_KEY": api_key,
                "RESONANCE_LIMITS__MAX_CONNECTIONS": "0",
                "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP": "0",
                "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_USER": "0",
            }
            if redis_url:
                env["RESONANCE_REDIS_URL"] = redis_url
            if processes > 1:
                env["RESONANCE_PROCESSES"] = str(processes)
            if source is not None:
                env["PYTHONPATH"] = str(source / "worker")
            server = Server(
                f"{name}:{port}",
                argv,
                log=self.workdir / f"worker-{port}.log",
                env=env,
                cpus=self.cpus,
                nice=self.nice,
            )
            self.servers.append(server)
            # 120 s: on a loaded shared machine a worker on the Redis engine took 30-35 s to be ready (and one
            # from a fresh checkout compiles its bytecode first).
            _wait_until(
                functools.partial(worker_settled, f"http://127.0.0.1:{port}/ready"),
                120,
                server.name,
                server.process,
            )
            urls.append(f"ws://127.0.0.1:{port}/connection/websocket")
            if processes > 1:
                # Every forked process listens (the kernel spreads connections over the listeners).
                _wait_until(
                    functools.partial(_forked_and_listening, server.pid, port, processes),
                    30,
                    server.name,
                    server.process,
                )
                pids.extend(_children(server.pid))
            else:
                pids.append(server.pid)
            if node == 0:
                api_url = f"http://127.0.0.1:{port}/api"
        suffix = f"-{nodes}nodes" if nodes > 1 else ""
        suffix += f"-{processes}processes" if processes > 1 else ""
        return Target(
            name=f"{name}-{engine.value}{suffix}",
            ws_urls=tuple(urls),
            api_url=api_url,
            api_key=api_key,
            token_secret=secret,
            server_pids=tuple(pids),
            engine_pids=tuple(self.engine_pids),
        )

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()


@contextlib.contextmanager
def stack(workdir: Path, cpus: frozenset[int] | None = None, nice: int = 0) -> Iterator[Stack]:
    """Servers that are stopped on the way out, whatever happened."""
    started = Stack(workdir, cpus, nice)
    try:
        yield started
    finally:
        started.stop()
