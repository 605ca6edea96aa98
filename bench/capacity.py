"""The capacity model of ``docs/capacity.md``: what a connection, a delivered message and a connect cost one
worker process and its Redis, fitted to measurements at several sizes and checked against one the fit did not
use.

    .venv/bin/python -m bench.capacity                                  # fit 1k, 5k, 10k; check 3k
    .venv/bin/python -m bench.capacity --fit 1000 5000 --check 2000     # quicker

Each size starts a fresh Redis and one worker with the environment the operator renders (``bench.sizing``:
the Redis engine, JSON logs, the drain settings), runs the chat scenario (50-member rooms, one publication a
second in each, so every connection receives one message a second) and reads from /proc: the worker's RSS
growth per connection, its CPU while idle, while connecting and while publishing, and Redis's CPU. Linear
least-squares fits of those against the number of connections (and of CPU against the delivery rate) give the
per-unit costs; the check size is predicted from the fit and compared with what was measured there.
Results: ``bench/results/capacity-<time>.json``; the table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.load import runner
from bench.load.scenario import Target
from bench.load.servers import stack
from bench.sizing import REPO, operator_environment, sizing_scenario, start_worker


def measure(connections: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """One size: the operator-profile worker on a fresh Redis under the chat scenario."""
    scenario = sizing_scenario(connections, seconds, settle_s=5.0)
    with stack(workdir / f"capacity-{connections}") as servers:
        env = operator_environment()
        env["RESONANCE_REDIS_URL"] = servers.start_redis()
        url, pid, secret = start_worker(servers.workdir, env, servers.servers, "worker-operator")
        target = Target(
            name="worker-operator",
            ws_urls=(url,),
            token_secret=secret,
            server_pids=(pid,),
            engine_pids=tuple(servers.engine_pids),
        )
        with open("/proc/loadavg") as loadavg:
            load = float(loadavg.read().split()[0])
        result = runner.run(scenario, target)
    connect, idle, publish = result["connect"], result.get("idle", {}), result.get("publish", {})
    return {
        "connections": connections,
        "connected": connect["connected"],
        "load_1min_at_start": load,
        "connects_per_s": connect["connects_per_s"],
        "server_cpu_ms_per_connect": connect.get("server_cpu_ms_per_connect"),
        "redis_cpu_ms_per_connect": connect.get("engine_cpu_ms_per_connect"),
        "rss_base_mib": idle.get("server_rss_base_mib"),
        "rss_idle_mib": idle.get("server_rss_mib"),
        "idle_cores": idle.get("server_cores_idle"),
        "delivered_per_s": publish.get("delivered_msgs_per_s"),
        "delivery_ratio": publish.get("delivery_ratio"),
        "publish_cores": publish.get("server_cores"),
        "redis_cpu_us_per_publication": publish.get("engine_cpu_us_per_publication"),
        "p99_ms": (publish.get("latency_ms") or {}).get("p99_ms"),
    }


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``: (a, b)."""
    n = len(xs)
    if n < 2 or len(ys) != n:
        raise ValueError("a line needs at least two points")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("the points need at least two distinct x")
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def model(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-unit costs fitted to ``rows`` (sizes measured), as ``docs/capacity.md`` states them."""
    n = [float(r["connected"]) for r in rows]
    rss_a, rss_b = fit_line(n, [r["rss_idle_mib"] * 1024 for r in rows])  # KiB
    idle_a, idle_b = fit_line(n, [r["idle_cores"] for r in rows])
    # CPU is fitted only where the worker kept up (delivered ≥ 99 %): a starved run (shared machine) measures
    # the share of a core it was given, not what its work costs. Memory is fitted at every size.
    kept_up = [r for r in rows if (r.get("delivery_ratio") or 0) >= 0.99]
    if len(kept_up) < 2:
        raise ValueError("fewer than two sizes delivered every message: no CPU fit")
    rate = [float(r["delivered_per_s"]) for r in kept_up]
    # Cores while publishing against deliveries per second. In the chat scenario every connection receives
    # one message a second, so the connections' own upkeep (pings, presence refresh) cannot be told apart from
    # the messages here: it is folded into the cost per delivered message, which is therefore an upper bound.
    msg_a, msg_b = fit_line(rate, [r["publish_cores"] for r in kept_up])
    return {
        "cpu_fitted_on": [r["connections"] for r in kept_up],
        "process_rss_mib": round(rss_a / 1024, 1),
        "kib_per_connection": round(rss_b, 2),
        "idle_cores_at_zero": round(idle_a, 4),
        "idle_core_us_per_connection_s": round(idle_b * 1e6, 3),  # CPU µs per connection per second
        "cpu_us_per_delivered": round(msg_b * 1e6, 2),
        "publish_cores_intercept": round(msg_a, 4),
        "server_cpu_ms_per_connect": round(mean([r["server_cpu_ms_per_connect"] for r in rows]) or 0, 3),
        "redis_cpu_ms_per_connect": mean([r["redis_cpu_ms_per_connect"] for r in rows]),
        "redis_cpu_us_per_publication": mean([r["redis_cpu_us_per_publication"] for r in rows]),
    }


def predict(costs: dict[str, Any], connections: int, delivered_per_s: float) -> dict[str, float]:
    """RSS (MiB) and cores while publishing that the model gives for one size."""
    return {
        "rss_idle_mib": round(costs["process_rss_mib"] + costs["kib_per_connection"] * connections / 1024, 1),
        "publish_cores": round(
            costs["publish_cores_intercept"] + costs["cpu_us_per_delivered"] * delivered_per_s / 1e6, 3
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--fit", type=int, nargs="+", default=[1000, 5000, 10_000], help="sizes to fit")
    parser.add_argument("--check", type=int, default=3000, help="a size left out of the fit, predicted")
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing phase of each size")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--refit", type=Path, help="fit the rows of an earlier capacity-<time>.json again")
    args = parser.parse_args(argv)
    if args.refit is not None:
        rows = json.loads(args.refit.read_text())["rows"]
    else:
        rows = []
        with tempfile.TemporaryDirectory(prefix="capacity-") as tmp:
            for connections in [*args.fit, args.check]:
                row = measure(connections, args.seconds, Path(tmp))
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"capacity-{time.strftime('%Y%m%dT%H%M%S')}.json"
    fitted, check = rows[:-1], rows[-1]
    try:
        costs = model(fitted)
    except ValueError as refused:
        # A starved run keeps its rows: memory is still measured well, and --refit can use them later.
        path.write_text(json.dumps({"rows": rows, "model": None, "refused": str(refused)}, indent=2))
        print(f"no fit ({refused}); rows in {path}", file=sys.stderr)
        return 1
    predicted = predict(costs, check["connected"], check["delivered_per_s"])
    errors = {
        key: round((check[key] - value) / value, 3) if value else None for key, value in predicted.items()
    }
    document = {
        "machine": {"cpus": os.cpu_count(), "load_1min_at_end": os.getloadavg()[0]},
        "rows": rows,
        "model": costs,
        "check": {"connections": check["connections"], "predicted": predicted, "relative_error": errors},
    }
    path.write_text(json.dumps(document, indent=2))
    print(json.dumps({"model": costs, "check": document["check"]}, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
