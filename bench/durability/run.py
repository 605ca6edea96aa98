"""What a primary's SIGKILL loses under each durability setting, measured on real processes.

    .venv/bin/python -m bench.durability.run [--rounds 3] [--publishers 16] [--settings none,wait,...]
                                             [--scenarios kill,lag]

For each setting a fresh replicated Redis is started (one primary, two replicas, three real
``redis-sentinel`` processes; the harness in ``tests/harness/sentinel.py``), and a raw redis-py publisher
(``publishers`` concurrent tasks on one Sentinel-managed client) publishes as the Redis engine does: one
Lua script bumps the channel's offset and XADDs the body at that offset. Each publication carries a
unique id; an acknowledgement is the script's answer (and, for ``wait``, ``WAIT 1`` confirming a
replica got it, pipelined with the script: still one round trip). After about a second the primary is
SIGKILL-ed (scenario ``kill``: replication healthy, as on a quiet network; scenario ``lag``: the replicas
are SIGSTOP-ed for ``--lag`` seconds first, with 16 KiB bodies, so the replication stream piles up in the
primary's memory as over a slow or congested link, and resumed at the kill); the publishers keep going
(failed attempts are counted, never retried with the same id)
until the Sentinels have promoted a replica and a second more has passed. Then the stream on the new
primary is compared with what was acknowledged:

    lost             acknowledged, not in the stream
    offset reused    acknowledged at offset N, and N now holds another publication (a recovering client
                     at N would not notice the loss: its position names a different publication)
    stored unacked   an attempt that failed (no answer) but is in the stream
    duplicates       one id stored twice (never expected: nothing is retried)

Settings: ``none`` (ack on the primary's answer), ``wait`` (WAIT 1 before the ack; a WAIT that
confirms no replica within its timeout is a refusal), ``min-replicas`` (the primary refuses writes with
fewer than 1 replica whose last acknowledgement is at most 1 s old: ``min-replicas-to-write 1``,
``min-replicas-max-lag 1``),
``wait+min-replicas``, and ``waitaof`` (WAITAOF 0 1, Redis 7.2+; reported as unavailable on an older
server). Prints a table and writes ``bench/results/durability.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import platform
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import NoScriptError, RedisError, ResponseError

from tests.harness.sentinel import SentinelRedis

RESULTS = Path(__file__).resolve().parent.parent / "results" / "durability.json"
STREAM, META = "bench.stream.chat", "bench.meta.chat"
# KEYS: stream, meta. ARGV: body. The engine's publish, reduced to what durability is about.
PUBLISH = """
local offset = redis.call("hincrby", KEYS[2], "s", 1)
redis.call("xadd", KEYS[1], offset, "d", ARGV[1])
return offset
"""
SETTINGS = ("none", "wait", "min-replicas", "wait+min-replicas", "waitaof")
WAIT_TIMEOUT_MS = 500
MIN_REPLICAS_MAX_LAG = 1  # seconds; Redis' default is 10
SOCKET_TIMEOUT = 1.5  # longer than WAIT's own timeout, so a WAIT answers rather than times out


@dataclass
class Round:
    setting: str
    scenario: str
    acknowledged: int = 0
    failed_attempts: int = 0
    refused: int = 0  # an answer that is a refusal: WAIT confirmed no replica, NOREPLICAS
    lost: int = 0
    offset_reused: int = 0
    stored_unacked: int = 0
    duplicates: int = 0
    failover_seconds: float = 0.0
    unavailable: str = ""
    lost_span_seconds: float = 0.0  # from the first to the last acknowledgement of what was lost
    lost_offsets: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


def node_args(setting: str) -> list[str]:
    if "min-replicas" in setting:
        return ["--min-replicas-to-write", "1", "--min-replicas-max-lag", str(MIN_REPLICAS_MAX_LAG)]
    if setting == "waitaof":
        return ["--appendonly", "yes"]
    return []


async def publish_once(client: aioredis.Redis, setting: str, script_sha: str, body: str) -> int:
    """One publication; its offset once acknowledged under ``setting``. Raises on a refusal or no answer."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.evalsha(script_sha, 2, STREAM, META, body)
        if setting.startswith("wait+") or setting == "wait":
            pipe.execute_command("WAIT", 1, WAIT_TIMEOUT_MS)
        elif setting == "waitaof":
            pipe.execute_command("WAITAOF", 0, 1, WAIT_TIMEOUT_MS)
        answers = await pipe.execute()
    offset = int(answers[0])
    if setting == "wait" or setting.startswith("wait+"):
        if int(answers[1]) < 1:
            raise RefusedError(f"WAIT confirmed no replica for offset {offset}")
    elif setting == "waitaof" and int(answers[1][1]) < 1:
        raise RefusedError(f"WAITAOF confirmed no replica fsync for offset {offset}")
    return offset


class RefusedError(Exception):
    """An answer that is not an acknowledgement."""


def count_error(result: Round, exc: BaseException) -> None:
    reason = f"{type(exc).__name__}: {str(exc)[:48]}"
    result.errors[reason] = result.errors.get(reason, 0) + 1


async def measure(setting: str, scenario: str, publishers: int, lag: float, workdir: Path) -> Round:
    result = Round(setting, scenario)
    padding = "x" * (16384 if scenario == "lag" else 0)
    deployment = await asyncio.to_thread(SentinelRedis(workdir, node_args=node_args(setting)).start)
    sentinel = Sentinel(deployment.sentinel_addresses, socket_timeout=0.5)
    client = sentinel.master_for(
        deployment.service, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=0.5
    )
    try:
        if setting == "waitaof":
            version = str((await client.info("server"))["redis_version"])
            if tuple(int(p) for p in version.split(".")[:2]) < (7, 2):
                result.unavailable = f"WAITAOF needs Redis 7.2+; this is {version}"
                return result
        script = {"sha": await client.script_load(PUBLISH)}
        acked: dict[str, int] = {}
        acked_at: dict[str, float] = {}
        failed: set[str] = set()
        ids = itertools.count()
        stop = asyncio.Event()

        async def publisher(worker: int) -> None:
            while not stop.is_set():
                body = f"{worker}-{next(ids)}"
                payload = f"{body}|{padding}"
                try:
                    acked[body] = await publish_once(client, setting, script["sha"], payload)
                    acked_at[body] = time.monotonic()
                except RefusedError as exc:
                    count_error(result, exc)
                    result.refused += 1
                    failed.add(body)
                except NoScriptError as exc:  # a promoted replica has no script cache: load, go on
                    count_error(result, exc)
                    failed.add(body)
                    with contextlib.suppress(RedisError, OSError):
                        script["sha"] = await client.script_load(PUBLISH)
                except ResponseError as exc:  # NOREPLICAS, READONLY: a refusal
                    count_error(result, exc)
                    result.refused += 1
                    failed.add(body)
                    await asyncio.sleep(0.02 * random.random())
                except (RedisError, OSError) as exc:
                    count_error(result, exc)
                    result.failed_attempts += 1
                    failed.add(body)
                    await asyncio.sleep(0.05 + 0.05 * random.random())

        tasks = [asyncio.create_task(publisher(i)) for i in range(publishers)]
        await asyncio.sleep(1.0)
        paused = await asyncio.to_thread(deployment.pause_replicas) if scenario == "lag" else []
        await asyncio.sleep(lag if paused else 0)
        killed = await asyncio.to_thread(deployment.kill_primary)
        for node in paused:
            deployment.resume(node)
        started = time.monotonic()
        await asyncio.to_thread(deployment.wait_for_failover, killed.address)
        result.failover_seconds = round(time.monotonic() - started, 2)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)

        new_primary = deployment.primary()
        reader = aioredis.Redis(host=new_primary.host, port=new_primary.port)
        entries = await reader.xrange(STREAM)
        await reader.aclose()
        stored: dict[int, str] = {}
        seen: dict[str, int] = {}
        for entry_id, fields in entries:
            body = fields[b"d"].decode().split("|")[0]
            offset = int(entry_id.decode().split("-")[0])
            stored[offset] = body
            seen[body] = seen.get(body, 0) + 1
        result.acknowledged = len(acked)
        result.duplicates = sum(1 for n in seen.values() if n > 1)
        lost = [(offset, body) for body, offset in acked.items() if body not in seen]
        result.lost = len(lost)
        result.lost_offsets = sorted(offset for offset, _ in lost)[:20]
        if lost:
            times = [acked_at[body] for _, body in lost]
            result.lost_span_seconds = round(max(times) - min(times), 2)
        result.offset_reused = sum(1 for offset, body in lost if stored.get(offset, body) != body)
        result.stored_unacked = sum(1 for body in failed if body in seen)
        return result
    finally:
        await client.aclose()
        await sentinel.aclose()
        await asyncio.to_thread(deployment.stop)


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publishers", type=int, default=16)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--scenarios", default="kill,lag")
    parser.add_argument("--lag", type=float, default=4.0, help="seconds the replicas are stopped (lag)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-durability-") as tmp:
        for scenario, setting in itertools.product(args.scenarios.split(","), args.settings.split(",")):
            for n in range(args.rounds):
                workdir = Path(tmp) / f"{scenario}-{setting}-{n}"
                outcome = await measure(setting, scenario, args.publishers, args.lag, workdir)
                rounds.append(outcome)
                o = outcome
                print(
                    f"{scenario:4} {setting:18} round {n + 1}: acked {o.acknowledged:6}  lost {o.lost:4}"
                    f"  reused {o.offset_reused:4}  stored-unacked {o.stored_unacked:3}  dup {o.duplicates}"
                    f"  refused {o.refused:5}  no-answer {o.failed_attempts:4}"
                    f"  lost span {o.lost_span_seconds} s"
                    f"  failover {o.failover_seconds} s {o.unavailable}",
                    flush=True,
                )
                if outcome.unavailable:
                    break
    report = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "publishers": args.publishers,
        "lag_seconds": args.lag,
        "rounds": [asdict(r) for r in rounds],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    asyncio.run(main())
