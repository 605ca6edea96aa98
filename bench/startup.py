"""A worker process's start-up: wall time from spawn to ``/ready`` 200, and its CPU - at that moment
(user + system from /proc) and in all (``getrusage`` of the child once it exits, after it settled:
the background biometrics warm-up included) - with the in-memory engine and with Redis, this tree
against another commit's worker in the same run (ratios; the machine is shared).

    .venv/bin/python -m bench.startup --baseline-ref main --runs 5

Writes ``bench/results/startup-<time>.json`` (git-ignored) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.run import checkout, load_average

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def settle(pid: int, quiet: float = 1.5, limit: float = 60.0) -> None:
    """Wait until the process has used no CPU for ``quiet`` seconds (its warm-up done)."""
    deadline = time.monotonic() + limit
    last, since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_seconds(pid)
        if now - last > 0.02:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def one_start(source: Path | None, engine: str, redis_url: str | None, workdir: Path) -> dict[str, float]:
    port = free_port()
    env = {
        **os.environ,
        "RESONANCE_HOST": "127.0.0.1",
        "RESONANCE_PORT": str(port),
        "RESONANCE_JWT_SECRET": "startup-bench-secret-long-enough-for-hs256",
        "RESONANCE_ENGINE": engine,
        "RESONANCE_LOG_JSON": "true",
    }
    if redis_url:
        env["RESONANCE_REDIS_URL"] = redis_url
    if source is not None:
        env["PYTHONPATH"] = str(source / "worker")
    before = children_cpu()
    started = time.monotonic()
    with (workdir / f"worker-{port}.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "resonance_worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        while not ready(port):
            if process.poll() is not None:
                raise RuntimeError(f"worker exited {process.returncode}: see {workdir}")
            time.sleep(0.02)
        wall = time.monotonic() - started
        at_ready = cpu_seconds(process.pid)
        settle(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return {"ready_wall_s": wall, "ready_cpu_s": at_ready, "total_cpu_s": children_cpu() - before}


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", default="main")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engines", nargs="+", default=["memory", "redis"])
    args = parser.parse_args()
    loads = [load_average()]
    rows: dict[str, dict[str, list[dict[str, float]]]] = {}
    with (
        checkout(args.baseline_ref) as base,
        tempfile.TemporaryDirectory(prefix="resonance-startup-") as workdir,
        redis_server() as url,
    ):
        for engine in args.engines:
            for _ in range(args.runs):  # interleaved, so both see the same load
                for name, source in (("base", base), ("this", None)):
                    run = one_start(source, engine, url if engine == "redis" else None, Path(workdir))
                    rows.setdefault(engine, {}).setdefault(name, []).append(run)
                    loads.append(load_average())
    ones = [load[0] for load in loads]
    print(f"load average (1 min) during the run: {min(ones):.1f}-{max(ones):.1f}")
    figure_head = f"figure (median of {args.runs})"
    print(f"{'engine':8} {figure_head:26} {'base':>8} {'this':>8} {'this/base':>9}")
    summary: dict[str, Any] = {}
    for engine, by in rows.items():
        for figure in ("ready_wall_s", "ready_cpu_s", "total_cpu_s"):
            b = statistics.median(r[figure] for r in by["base"])
            t = statistics.median(r[figure] for r in by["this"])
            summary[f"{engine}.{figure}"] = {"base": b, "this": t, "ratio": t / b}
            print(f"{engine:8} {figure:26} {b:8.2f} {t:8.2f} {t / b:9.2f}")
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"startup-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {"baseline_ref": args.baseline_ref, "loads": loads, "runs": rows, "summary": summary}
    out.write_text(json.dumps(document))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
