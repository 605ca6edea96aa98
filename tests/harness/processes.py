"""Start, probe and stop the real service processes the tests talk to."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Listening ports come from below the kernel's ephemeral range (32768-60999 on Linux): a port the
# kernel hands out for binding to 0 is also a source port it may give the next outgoing connection
# (load tests open thousands), which then takes the port before our server binds it.
LISTEN_PORTS = range(20000, 32768)


def _listen_ports(environ: Mapping[str, str] = os.environ) -> range:
    """``LISTEN_PORTS``, or the part of it ``RESONANCE_TEST_PORTS=LOW-HIGH`` gives this run: ``make test``
    runs e2e/ beside tests/ and gives each its own part, so the two runs never choose the same port."""
    text = environ.get("RESONANCE_TEST_PORTS", "")
    if not text:
        return LISTEN_PORTS
    low, _, high = text.partition("-")
    ports = range(int(low), int(high) + 1)
    if not (ports and LISTEN_PORTS.start <= ports.start and ports.stop <= LISTEN_PORTS.stop):
        raise ValueError(f"RESONANCE_TEST_PORTS={text!r} is not a part of {LISTEN_PORTS}")
    return ports


def worker_ports(ports: range | None = None, environ: Mapping[str, str] = os.environ) -> range:
    """This test process's share of ``ports`` (by default this run's part of ``LISTEN_PORTS``).

    Under pytest-xdist (``make test`` runs tests/ in two processes) each worker ``gwN`` of
    ``PYTEST_XDIST_WORKER_COUNT`` draws from its own slice, so two workers never choose the same port
    between one's choice and its server's bind. Outside xdist the whole range is ours.
    """
    ports = _listen_ports(environ) if ports is None else ports
    worker, count = environ.get("PYTEST_XDIST_WORKER", ""), environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1):
        return ports
    index, total = int(worker[2:]), int(count)
    size = len(ports) // total
    return ports[index * size : (index + 1) * size]


# Ports handed out by this process: a port chosen but not yet bound by its server still tests free, so
# without this two services started one after the other could be given the same port.
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now, outside the ephemeral range, in this process's share
    of it, and not handed out before by this process."""
    rng = random.Random()
    ports = worker_ports()
    if len(_handed_out) > len(ports) // 2:  # a very long run: start over rather than run dry
        _handed_out.clear()
    for _ in range(200):
        port = rng.choice(ports)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {ports} on {host}")


# Linux's prctl(2) option: the signal a process gets when the thread that started it ends.
PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child SIGKILLed when the test process dies; None where prctl is absent.

    A killed pytest (SIGKILL, a CI timeout) runs no fixture teardown: without this its Redis servers, workers
    and Node clients run on for hours. The child runs in its own session (``start_new_session``), so a
    Ctrl-C on the terminal does not reach it either; teardown (or this) ends it. The kernel sends the signal
    when the *thread* that forked the child ends, hence :func:`tethered_popen`."""
    if _PRCTL is None:
        return None
    prctl, parent = _PRCTL, os.getpid()

    def tether() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the tether held
            os._exit(1)

    return tether


# Children started from other threads (``asyncio.to_thread(server.start)``) are forked here: this thread
# lives as long as the process, so a pool thread that ends does not take its children with it.
_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def tethered_popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` in a new session; the child dies with this process (:func:`die_with_parent`)."""
    global _spawner
    kwargs.setdefault("start_new_session", True)

    def spawn() -> subprocess.Popen[Any]:
        return subprocess.Popen(argv, preexec_fn=die_with_parent(), **kwargs)

    if threading.current_thread() is threading.main_thread():
        return spawn()
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tethered-spawn")
    return _spawner.submit(spawn).result()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ServiceProcess:
    """One service started as a child process, with its output in a log file.

    The process gets its own process group, so ``stop`` also ends anything it
    started, and it dies with the test process (:func:`tethered_popen`), so nothing
    stray survives even a killed test run.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = tethered_popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                cwd=self.cwd,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_until(self, check: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll ``check`` until it holds; fail with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited before {what}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: no {what} within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL it if it lingers; return the exit code."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.proc.wait(timeout=timeout)
        finally:
            # Anything the service left in its group goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)
