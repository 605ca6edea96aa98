"""A full Redis (``maxmemory`` with ``noeviction``, as the operator configures it): writes are refused
with a clear error, counted in ``resonance_redis_oom_total``, nothing already stored is evicted, and the
circuit stays closed (Redis is up; reads still work). Real redis-server, real worker process."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.harness.redis import RedisServer
from tests.harness.worker import WorkerProcess

pytestmark = pytest.mark.redis


def test_a_full_redis_refuses_publications_counts_them_and_evicts_nothing(tmp_path: Path) -> None:
    server = RedisServer(
        tmp_path / "redis", extra_args=["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]
    ).start()
    worker = WorkerProcess(
        tmp_path,
        {
            "RESONANCE_ENGINE": "redis",
            "RESONANCE_REDIS_URL": server.url,
            "RESONANCE_REDIS_PREFIX": f"oom-{uuid.uuid4().hex[:6]}",
            "RESONANCE_LIVING__ENABLED": "false",
        },
    )
    try:
        worker.start(120.0)
        blob = "x" * 20_000
        accepted: list[int] = []
        refused: tuple[int, object] | None = None
        for n in range(2_000):  # far more than 3 MB of history
            status, body = worker.api(
                "publish", {"channel": f"chat:oom{n % 50}", "data": {"n": n, "b": blob}}
            )
            if status != 200:
                refused = (status, body)
                break
            accepted.append(n)
        assert refused is not None, "Redis never filled up"
        assert accepted, "nothing was accepted before Redis filled up"
        assert refused[0] == 507 and "storage full" in str(refused[1]), refused
        oom = re.search(r"^resonance_redis_oom_total ([0-9.e+]+)$", worker.metrics(), re.MULTILINE)
        assert oom is not None and float(oom.group(1)) >= 1
        # Nothing evicted: every accepted publication is still in its channel's history, and reads work.
        kept = 0
        for channel in {f"chat:oom{n % 50}" for n in accepted}:
            status, body = worker.api("history", {"channel": channel, "limit": 1000})
            assert status == 200, body
            kept += len(body["result"]["publications"])
        assert kept == len(accepted)
    finally:
        worker.stop()
        server.stop()
