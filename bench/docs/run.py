"""Shared Yjs documents across two workers: 50 editors in one document, each editing 5 times a second.

Run: ``.venv/bin/python -m bench.docs.run [--editors 50] [--rate 5] [--seconds 20]``; writes
``bench/results/docs.json``.

One Redis and two workers (``resonance-worker``, Redis engine) on loopback; the editors are real
npm ``yjs`` documents with the ``resonance-yjs`` provider on centrifuge-js (tests/js/bench-editors.mjs),
half of them on each worker, in two Node processes. Each edit inserts a character into a shared
text and sets the editor's entry in a shared map to ``[editor, seq, wall ms]``; every other editor
records, when the update is applied, the delay from the edit (one machine, one clock). The
provider merges the updates made while its window of ``doc.send`` calls is full, and a map entry
overwritten twice in one merged update is seen once, so under backlog "delivered" counts fewer
than were made; the latency of what arrives is what an editor saw. ``rpc_ms`` is each editor's
``doc.send`` round trip. The
**baseline** runs the same schedule as plain publications on a channel without history (``typing:``)
through the same workers: the price of the document path (RPC, the log in Redis, the publication) is
the ratio. Delivered/expected counts map entries seen (two updates of one editor applied in one
batch count once, so it is under 1 for documents when the provider merges).

Where the time goes: each run also reports the workers' histograms over the run (scraped before and
after: ``resonance_doc_update_fanout_seconds``, ``resonance_delivery_latency_seconds``), the editors'
delay at the socket's receipt beside the apply, the provider's queue, Node's event-loop delay and V8's
pauses. ``--modes`` takes variants (``parse_variant``): more Node processes, their niceness, only a few
editors applying (the server's work unchanged), the provider's window, ``main``'s provider beside this
one, and with ``--baseline-ref main`` the workers of that commit beside this checkout's (two more workers
on the same Redis, used by the variants marked ``/base``): ``--modes yjs/main/base,yjs`` is main against
this branch. The editors' own receive cost in CPU time comes from tests/js/bench-apply.mjs (no server).

Whose CPU: ``cores`` are the cores' worth each party used over the run (the workers, Redis, the editors'
Node processes) and ``cpu_ms_per_edit`` the same as CPU milliseconds per edit made: on a loaded machine the
ratios of these hold where wall-clock latencies do not. ``--server-cpus 0 --editor-cpus 1`` pins the workers
and Redis to one CPU and the editors to another (taskset), so the simulated devices do not take the servers'
CPU (other processes on the machine still may); ``--node-args`` passes options to the editors' node (e.g.
``--cpu-prof --cpu-prof-dir=<dir>`` for a profile of each).

Memory per open document: this process opens 300 documents as a worker holds them (``OpenDoc``,
pycrdt), each holding the benchmark's final document state, and reports the RSS growth per document beside the
document's encoded size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.centrifugo.config import Engine
from bench.load.protocol import mint_token
from bench.load.servers import stack
from bench.run import checkout

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "tests" / "js"
RESULTS = ROOT / "bench" / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]  # nearest rank


def run_delay_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (/proc/<pid>/schedstat, summed
    over its threads): on a loaded machine, what a process wanted and did not get."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def run_editors(targets: dict[str, Any], mode: str, args: argparse.Namespace) -> dict[str, Any]:
    variant = parse_variant(mode, args)
    mode = variant["mode"]
    target = targets["base" if variant["workers"] == "base" else "this"]
    if target is None:
        raise SystemExit(f"{variant}: /base needs --baseline-ref")
    urls, secret, server_pids = target.ws_urls, target.token_secret, target.server_pids
    redis_pids = target.engine_pids
    channel = f"{'doc' if mode == 'yjs' else 'typing'}:bench-{mode}-{int(time.time() * 1000)}"
    observers = list(range(variant["observers"])) if variant["observers"] else None  # both workers
    procs = []
    for part in range(variant["procs"]):
        ids = list(range(part, args.editors, variant["procs"]))
        cfg = {
            "urls": [urls[i % 2] for i in ids],  # editor i on worker i mod 2
            "tokens": [mint_token(secret, f"ed{i}", now=time.time()) for i in ids],
            "ids": ids,
            "channel": channel,
            "rate": args.rate,
            "seconds": args.seconds,
            "mode": mode,
            "observers": observers,
            "provider": provider_from(variant["provider"], args.baseline_ref or "main"),
            "window": variant["window"] or None,
            "fastMs": variant["fast_ms"] or None,
        }
        nice = ["nice", "-n", str(variant["nice"])] if variant["nice"] else []
        pin = ["taskset", "-c", args.editor_cpus] if args.editor_cpus else []
        heap = [f"--max-semi-space-size={variant['semi_space']}"] if variant["semi_space"] else []
        heap += ["--single-threaded-gc"] if variant["single_gc"] else []
        proc = await asyncio.create_subprocess_exec(
            *pin, *nice, "node", *heap, *args.node_args.split(), "--preserve-symlinks", "bench-editors.mjs",
            json.dumps(cfg), cwd=JS,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**26,
        )  # fmt: skip
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 120))
        assert ready.get("ready"), ready
    start_ms = time.time() * 1000 + 500
    metrics_before = [await scrape(u) for u in urls]
    load_before = os.getloadavg()[0]
    workers_cpu = sum(cpu_seconds(p) for p in server_pids)
    redis_cpu = sum(cpu_seconds(p) for p in redis_pids)  # shared with /base's workers, if any
    workers_waited = sum(run_delay_seconds(p) for p in server_pids)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"go {start_ms}\n".encode())
        await proc.stdin.drain()
    outs = []
    for proc in procs:
        assert proc.stdout is not None
        outs.append(json.loads(await asyncio.wait_for(proc.stdout.readline(), args.seconds + 120)))
    window = args.seconds + 2.5  # the editing window, the start delay and the last deliveries
    # Cores' worth of time spent waiting for a CPU (run queue), beside the cores used: a process
    # starved by the machine's load shows it here, one that idles does not.
    waited = {
        "workers": round((sum(run_delay_seconds(p) for p in server_pids) - workers_waited) / window, 2),
        "editors": round(sum(out["waitedSeconds"] for out in outs) / window, 2),  # Node's own count
    }
    cores = {
        "workers": round((sum(cpu_seconds(p) for p in server_pids) - workers_cpu) / window, 2),
        "editors": round(sum(out["cpuSeconds"] for out in outs) / window, 2),  # Node's own count
        "redis": round((sum(cpu_seconds(p) for p in redis_pids) - redis_cpu) / window, 2),
    }
    for proc in procs:
        await proc.wait()
    metrics_after = [await scrape(u) for u in urls]
    server = {
        name: histogram_quantiles(
            [merge(a, b, metric) for a, b in zip(metrics_before, metrics_after, strict=True)], (50, 99)
        )
        for name, metric in (
            ("doc_update_fanout_ms", "resonance_doc_update_fanout_seconds"),
            ("delivery_ms", "resonance_delivery_latency_seconds"),
        )
    }
    latencies = [lat for out in outs for lat in out["latencies"]]
    at_receipt = [lat for out in outs for lat in out.get("atReceipt", [])]
    client = {}
    if mode == "yjs":
        applied = [out["applyMs"] for out in outs if out.get("applyMs")]
        client = {
            "at_receipt_p50_ms": round(percentile(at_receipt, 50), 2) if at_receipt else None,
            "at_receipt_p99_ms": round(percentile(at_receipt, 99), 2) if at_receipt else None,
            "apply_ms": [{k: round(v, 3) for k, v in a.items()} for a in applied],
            "apply_cores": round(sum(out["applySeconds"] for out in outs) / window, 2),
            "batch": [out.get("batch") for out in outs],  # publications applied per transaction
            "queued_ms": [out.get("queuedMs") for out in outs],
            "loop_delay_ms": [out.get("loopDelayMs") for out in outs],
            "gc_ms": [out.get("gcMs") for out in outs],
            "heap_mib": [out.get("heapMiB") for out in outs],
        }
    sent = sum(out["sent"] for out in outs)
    # CPU per edit made (ms), whoever spent it: what the simulated devices cost beside the servers.
    per_edit = {k: round(v * window * 1000 / sent, 3) if sent else None for k, v in cores.items()}
    watching = variant["observers"] or args.editors  # each sees the others' edits
    expected = round(sent * watching * (args.editors - 1) / args.editors)
    return {
        **variant,
        "sent": sent,
        "delivered": len(latencies),
        "delivered_ratio": round(len(latencies) / expected, 4) if expected else 0.0,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "doc_bytes": max(out["docBytes"] for out in outs),
        "cores": cores,
        "cpu_ms_per_edit": per_edit,
        "waited_cores": waited,
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "server": server,
        "client": client,
        "rpc_ms": [out.get("rpcMs") for out in outs],
        "errors": {
            k: sum(out.get("errors", {}).get(k, 0) for out in outs)
            for out in outs
            for k in out.get("errors", {})
        },
    }


def parse_variant(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    """``yjs`` or ``plain``, optionally with ``/p<n>`` Node processes, ``/n<k>`` their niceness, ``/s<MiB>``
    V8's semi-space (node's ``--max-semi-space-size``: fewer scavenges), ``/g`` V8's collector on the
    main thread only (``--single-threaded-gc``: a pause never waits for a helper thread to get a CPU),
    ``/o<k>`` observers (editors that apply what they receive), ``/w<n>`` the provider's window of
    ``doc.send`` calls in flight and ``/f<ms>`` the round trip under which it opens (0: its defaults),
    ``/main`` (the provider of ``--baseline-ref``, else of ``main``, beside this checkout's) and
    ``/base`` (the workers of ``--baseline-ref``): ``yjs/p10/o4``."""
    mode, *options = spec.split("/")
    if mode not in ("yjs", "plain"):
        raise SystemExit(f"unknown mode {mode!r} in {spec!r}")
    variant = {"mode": mode, "procs": args.procs, "nice": args.nice, "observers": args.observers, "window": 0}
    variant["fast_ms"] = 0
    variant["semi_space"] = 0
    variant["single_gc"] = False
    variant["provider"] = "this"
    variant["workers"] = "this"
    names = {"p": "procs", "n": "nice", "o": "observers", "w": "window", "f": "fast_ms", "s": "semi_space"}
    for option in options:
        if option == "g":
            variant["single_gc"] = True
            continue
        if option in ("main", "base"):
            variant["provider" if option == "main" else "workers"] = option
            continue
        if option[:1] not in names or not option[1:].isdigit():
            raise SystemExit(
                f"unknown option {option!r} in {spec!r} "
                "(p<procs>, n<nice>, o<observers>, w<window>, f<fast ms>, s<semi-space MiB>, g, main, base)"
            )
        variant[names[option[0]]] = int(option[1:])
    return variant


def cpu_list(spec: str) -> list[int]:
    """A taskset-style CPU list: ``0``, ``0,1``, ``0-3``."""
    cpus: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def provider_from(which: str, ref: str) -> str | None:
    """The provider module for the editors: None for this checkout's, or ``ref``'s (``--baseline-ref``,
    else ``main``) written beside them."""
    if which == "this":
        return None
    source = subprocess.run(
        ["git", "show", f"{ref}:clients/yjs-provider/index.mjs"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    path = JS / ".bench-provider-main.mjs"  # in tests/js: it resolves yjs from the same node_modules
    path.write_bytes(source)
    return str(path)


async def scrape(ws_url: str) -> dict[str, float]:
    """A worker's /metrics samples (name with labels → value)."""
    import aiohttp

    url = ws_url.replace("ws://", "http://").replace("/connection/websocket", "/metrics")
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def merge(before: dict[str, float], after: dict[str, float], metric: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts gained between two scrapes (upper bound → count)."""
    prefix = f'{metric}_bucket{{le="'
    return {
        float(name[len(prefix) : -2]): value - before.get(name, 0.0)
        for name, value in after.items()
        if name.startswith(prefix)
    }


def histogram_quantiles(parts: list[dict[float, float]], qs: tuple[float, ...]) -> dict[str, Any]:
    """Quantiles (the upper bound of the bucket holding them, ms) of histograms summed over workers."""
    buckets: dict[float, float] = {}
    for part in parts:
        for bound, count in part.items():
            buckets[bound] = buckets.get(bound, 0.0) + count
    total = buckets.get(math.inf, 0.0)
    out: dict[str, Any] = {"n": int(total)}
    for q in qs:
        bound = next((b for b in sorted(buckets) if total and buckets[b] >= q / 100 * total), None)
        out[f"p{q:g}_le"] = None if bound is None else round(bound * 1000, 1) if bound != math.inf else "inf"
    return out


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def memory_per_document(state_bytes: int, count: int = 300) -> dict[str, Any]:
    """RSS growth per open document holding a document of about ``state_bytes`` (built here the
    same way: 1-character inserts at random places plus a map of 50 entries rewritten)."""
    import random

    import pycrdt
    from resonance_worker.living.docs import OpenDoc

    rng = random.Random(1)
    source: pycrdt.Doc[Any] = pycrdt.Doc()
    text, ymap = source.get("t", type=pycrdt.Text), source.get("m", type=pycrdt.Map)
    seq = 0
    while len(source.get_update()) < state_bytes:
        with source.transaction():
            text.insert(rng.randrange(len(text) + 1), "k")
            ymap[f"e{seq % 50}"] = [seq % 50, seq, 0.0]
        seq += 1
    state = source.get_update()
    before = rss_kib()
    held = []
    for _i in range(count):
        opened = OpenDoc()
        opened.doc.apply_update(state)
        held.append(opened)
    after = rss_kib()
    return {
        "documents": count,
        "state_bytes": len(state),
        "edits_in_state": seq,
        "rss_kib_per_document": round((after - before) / count, 1),
    }


async def receive_cost(args: argparse.Namespace) -> dict[str, Any]:
    """An editor's CPU per update received (frame parsed, base64, Y.applyUpdate), in one quiet Node
    process, no server (tests/js/bench-apply.mjs): the client's share, whatever the machine's load."""
    edits = int(args.editors * args.rate * args.seconds)
    cfg = json.dumps({"editors": args.editors, "edits": edits, "rate": args.rate})
    proc = await asyncio.create_subprocess_exec(
        "node", "--preserve-symlinks", "bench-apply.mjs", cfg, cwd=JS, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return dict(json.loads(out))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--editors", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=2, help="Node processes holding the editors")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the Node processes")
    parser.add_argument(
        "--observers", type=int, default=0,
        help="only this many editors apply what they receive (0: all); the others edit and receive",
    )  # fmt: skip
    parser.add_argument(
        "--server-cpus", default="",
        help="pin the workers and Redis to these CPUs (taskset list, e.g. 0): the servers measured apart",
    )  # fmt: skip
    parser.add_argument(
        "--editor-cpus", default="", help="pin the editors' Node processes to these CPUs (e.g. 1)"
    )
    parser.add_argument(
        "--node-args", default="", help="more options of the editors' node (--cpu-prof --cpu-prof-dir=<dir>)"
    )
    parser.add_argument("--modes", default="plain,yjs,plain,yjs", help="runs, in order (alternated)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default="docs.json", help="file name under bench/results/")
    parser.add_argument("--receive-cost", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--baseline-ref", default=None,
        help="also run two workers of this commit (git archive) on the same Redis, for the /base variants",
    )  # fmt: skip
    args = parser.parse_args()
    workdir = RESULTS / "docs-run"
    with contextlib.ExitStack() as cleanup:
        pinned = frozenset(cpu_list(args.server_cpus)) if args.server_cpus else None
        servers = cleanup.enter_context(stack(workdir, cpus=pinned))
        redis_url = servers.start_redis()
        targets = {"this": servers.start_worker(Engine.REDIS, nodes=2, redis_url=redis_url), "base": None}
        if args.baseline_ref:
            source = cleanup.enter_context(checkout(args.baseline_ref))
            targets["base"] = servers.start_worker(
                Engine.REDIS, nodes=2, redis_url=redis_url, source=source, name="base"
            )
        runs = []
        for mode in args.modes.split(","):  # alternated: machine load falls on both alike
            run = await run_editors(targets, mode, args)
            runs.append(run)
            print(json.dumps(runs[-1]), flush=True)
    doc_bytes = max(r["doc_bytes"] for r in runs)
    memory = await memory_per_document(doc_bytes) if args.memory else None
    cost = await receive_cost(args) if args.receive_cost else None
    print(json.dumps({"receive_cost": cost}), flush=True)
    result = {
        "editors": args.editors,
        "rate_per_editor": args.rate,
        "seconds": args.seconds,
        "workers": 2,
        "baseline_ref": args.baseline_ref,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "pinned": {"servers": args.server_cpus or None, "editors": args.editor_cpus or None},
        "runs": runs,
        "memory": memory,
        "receive_cost": cost,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(memory))


if __name__ == "__main__":
    asyncio.run(main())
