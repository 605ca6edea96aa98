"""The servers a test run starts die with it: a pytest killed outright (SIGKILL, a CI timeout) runs no
teardown, and its Redis servers and workers used to run on for hours. Here a real pytest starts two real
redis-servers through the harness's ``ServiceProcess`` (which starts workers, nginx, Neo4j ... the same
way) — one from the main thread, one from a thread that has ended by then, as
``asyncio.to_thread(server.start)`` does — and is SIGKILLed; both must be gone within a bounded wait."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.harness.processes import die_with_parent

REPO = Path(__file__).resolve().parents[2]

INNER_TEST = """
import json
import os
import threading
from pathlib import Path

from tests.harness.redis import RedisServer


def test_hold_servers_until_killed(tmp_path: Path) -> None:
    main = RedisServer(tmp_path / "main").start()
    started = []
    thread = threading.Thread(target=lambda: started.append(RedisServer(tmp_path / "thread").start()))
    thread.start()
    thread.join()
    pooled = started[0]
    assert main.process.alive() and pooled.process.alive(), "a child died with the thread that started it"
    Path(os.environ["TETHER_PIDS"]).write_text(json.dumps([main.process.pid, pooled.process.pid]))
    threading.Event().wait(600)  # until the outer test kills this pytest
"""


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(check: Callable[[], object], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


@pytest.mark.skipif(die_with_parent() is None, reason="needs Linux's prctl(PR_SET_PDEATHSIG)")
@pytest.mark.parametrize("xdist", [False, True], ids=["one-process", "xdist-worker"])
def test_a_killed_pytest_takes_its_servers_with_it(tmp_path: Path, xdist: bool) -> None:
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    pids_file = tmp_path / "pids.json"
    # Not under this run's coverage: a SIGKILLed process writes no data anyway.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE_", "COVERAGE_", "PYTEST_"))}
    env |= {"TETHER_PIDS": str(pids_file), "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:cov"]
    argv += ["-n", "1"] if xdist else ["-p", "no:xdist"]
    inner = subprocess.Popen(
        [*argv, "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(),
    )  # fmt: skip
    session = psutil.Process(inner.pid)
    pids: list[int] = []
    try:
        wait_for(lambda: pids_file.exists() or inner.poll() is not None, timeout=180, what="the servers up")
        assert inner.poll() is None, inner.communicate()[0].decode(errors="replace")
        wait_for(lambda: pids_file.read_text().endswith("]"), timeout=5, what="the pid file written")
        pids = json.loads(pids_file.read_text())
        assert not any(gone(pid) for pid in pids)
        pytest_processes = [session, *session.children(recursive=True)]
        assert set(pids) <= {p.pid for p in pytest_processes}, "the servers are not the inner run's children"

        inner.send_signal(signal.SIGKILL)
        inner.wait(10)
        # Both redis-servers and (under xdist) the pytest worker process end.
        wait_for(lambda: all(gone(pid) for pid in pids), timeout=20, what=f"servers {pids} gone")
        others = [p.pid for p in pytest_processes if p.pid not in pids and p.pid != inner.pid]
        wait_for(lambda: all(gone(pid) for pid in others), timeout=20, what=f"pytest workers {others} gone")
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait(10)
        for pid in pids:  # a failed run leaves nothing behind either
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
