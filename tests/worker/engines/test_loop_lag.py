"""A starved worker is not a failing Redis: on a real redis-server, a call whose deadline passes while the
worker's own event loop is blocked gets that time back and succeeds (nothing counted against Redis), and a
Redis that really stops answering (SIGSTOP) still times out in its deadline and opens the circuit."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from resonance_worker.engines.base import HistoryOptions
from resonance_worker.engines.redis import RedisEngine
from resonance_worker.errors import EngineCircuitOpenError, EngineTimeoutError
from resonance_worker.metrics import WorkerMetrics

from tests.harness.redis import RedisServer

pytestmark = pytest.mark.redis


async def test_a_call_waiting_while_the_worker_s_loop_is_blocked_is_given_that_time(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "lag-redis").start()
    engine = RedisEngine(redis.url, prefix="lag", timeout=0.5, circuit_failures=2, circuit_reset_seconds=30)
    try:
        await engine.start(None)
        kept = HistoryOptions(size=10, ttl_seconds=60)
        await engine.publish("chat:lag", b"0", history=kept)
        loop = asyncio.get_running_loop()
        for round_ in range(3):  # three in a row: enough to open a 2-failure circuit if they counted
            # The answer arrives while the loop is busy elsewhere for three deadlines' worth.
            loop.call_soon(time.sleep, 1.5)
            result = await engine.publish("chat:lag", f"{round_ + 1}".encode(), history=kept)
            assert result.position.offset == round_ + 2
        assert engine.deadlines_excused == 3
        assert engine.starved_timeouts == 0
        stored, _ = await engine.history("chat:lag", limit=10)  # the circuit stayed closed
        assert [p.data for p in stored] == [b"0", b"1", b"2", b"3"]
        metrics = WorkerMetrics()
        metrics.watch_engine(engine)
        scraped = metrics.render().decode()
        assert "resonance_redis_deadlines_excused_total 3.0" in scraped
    finally:
        await engine.close()
        redis.stop()


async def test_a_redis_that_stops_answering_still_times_out_and_opens_the_circuit(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "hung-redis").start()
    engine = RedisEngine(redis.url, prefix="hung", timeout=0.5, circuit_failures=2, circuit_reset_seconds=30)
    try:
        await engine.start(None)
        await engine.publish("chat:x", b"0")
        redis.process.signal(signal.SIGSTOP)
        try:
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(EngineTimeoutError) as timed_out:
                    await engine.publish("chat:x", b"1")
                # The deadline was not moved: the loop was free, the silence is Redis's.
                assert time.monotonic() - started < 4 * 0.5
                assert "event loop" not in str(timed_out.value)
            with pytest.raises(EngineCircuitOpenError):
                await engine.publish("chat:x", b"2")
            assert engine.deadlines_excused == 0
        finally:
            redis.process.signal(signal.SIGCONT)
    finally:
        await engine.close()
        redis.stop()
