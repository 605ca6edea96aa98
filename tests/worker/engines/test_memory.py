"""What only the memory engine does: freeing expired state, with no handler, its sweeper."""

from __future__ import annotations

import asyncio
import logging

import pytest
from resonance_worker.engines.base import ClientInfo, HistoryOptions, Publication, StreamPosition
from resonance_worker.engines.memory import MemoryEngine

from tests.worker.engines.conftest import FakeClock, Recorder

SHORT = HistoryOptions(size=10, ttl_seconds=5, meta_ttl_seconds=20)


async def fill(engine: MemoryEngine) -> None:
    await engine.publish("chat:a", b"1", history=SHORT, idempotency_key="k", idempotency_ttl_seconds=5)
    await engine.add_presence("chat:a", ClientInfo("u", "c"), ttl_seconds=5)
    await engine.take_token("u", rate_per_second=1, burst=3)


async def test_sweep_frees_expired_state_step_by_step() -> None:
    clock = FakeClock()
    engine = MemoryEngine(clock=clock, wall_clock=clock.wall, sweep_interval=0)
    await fill(engine)
    engine.sweep()
    assert engine.state_sizes() == {
        "streams": 1,
        "kept_publications": 1,
        "idempotency_keys": 1,
        "presence_channels": 1,
        "token_buckets": 1,
    }

    clock.now += 6  # history items, idempotency key, presence and bucket refill are past; the epoch is not
    engine.sweep()
    assert engine.state_sizes() == {
        "streams": 1,
        "kept_publications": 0,
        "idempotency_keys": 0,
        "presence_channels": 0,
        "token_buckets": 0,
    }

    clock.now += 20
    engine.sweep()
    assert engine.state_sizes()["streams"] == 0


async def test_the_sweeper_runs_between_start_and_close() -> None:
    clock = FakeClock()
    engine = MemoryEngine(clock=clock, wall_clock=clock.wall, sweep_interval=0.01)
    await engine.start(Recorder())
    await fill(engine)
    clock.now += 100

    async with asyncio.timeout(5):
        while engine.state_sizes()["streams"]:  # noqa: ASYNC110 - polls a background task's effect
            await asyncio.sleep(0.01)

    await engine.close()
    await engine.close()  # twice is fine
    assert engine.state_sizes() == dict.fromkeys(engine.state_sizes(), 0)


async def test_without_a_handler_events_go_nowhere_and_state_still_works() -> None:
    engine = MemoryEngine(sweep_interval=0)
    await engine.start()
    await engine.subscribe("chat:a")

    result = await engine.publish("chat:a", b"1", history=SHORT)
    await engine.publish_join("chat:a", ClientInfo("u", "c"))
    await engine.publish_leave("chat:a", ClientInfo("u", "c"))
    await engine.publish_control(b"{}")

    publications, top = await engine.history("chat:a", limit=-1)
    assert [p.data for p in publications] == [b"1"]
    assert top == result.position
    await engine.close()


async def test_delivery_is_synchronous_within_publish() -> None:
    events = Recorder()
    engine = MemoryEngine(sweep_interval=0)
    await engine.start(events)
    await engine.subscribe("chat:a")

    await engine.publish("chat:a", b"1")

    assert [e.kind for e in events.events] == ["publication"]  # no await needed in between
    await engine.close()


class FaultyRecorder(Recorder):
    def on_publication(self, channel: str, publication: Publication, position: StreamPosition) -> None:
        raise RuntimeError("handler bug")


async def test_a_handler_bug_does_not_fail_the_publish(caplog: pytest.LogCaptureFixture) -> None:
    engine = MemoryEngine(sweep_interval=0)
    await engine.start(FaultyRecorder())
    await engine.subscribe("chat:a")

    with caplog.at_level(logging.ERROR, logger="resonance.worker.engine"):
        result = await engine.publish("chat:a", b"1", history=SHORT)

    assert result.position.offset == 1
    assert [p.data for p in (await engine.history("chat:a", limit=-1))[0]] == [b"1"]
    assert any("not delivered" in r.getMessage() for r in caplog.records)
    await engine.close()
