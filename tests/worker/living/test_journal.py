"""The journal: ordered, bounded, retried. On the real memory event log; the failing log below is a
stand-in for "Redis is away" that refuses the first appends (the real 30 s outage is
tests/worker/transport/test_redis_outage.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from resonance_worker.domain import events
from resonance_worker.domain.backoff import Backoff
from resonance_worker.eventlog import EventLogError, MemoryEventLog
from resonance_worker.living.outbox import Journal


class RefusingFirst(MemoryEventLog):
    """The memory log, refusing its first ``refusals`` appends as a log that is away would."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def append_many(self, batch: Sequence[events.Event], *, trace: str | None = None) -> list[str]:
        if self.refusals > 0:
            self.refusals -= 1
            raise EventLogError("away")
        return await super().append_many(batch, trace=trace)


def _event(n: int) -> events.Event:
    return events.state_changed("ann", float(n), {"valence": 0.0, "arousal": 0.5}, seq=n)


async def test_events_raised_while_the_log_is_away_are_appended_in_order() -> None:
    log = RefusingFirst(refusals=3)
    failures: list[int] = []
    journal = Journal(log, lambda: failures.append(1), batch=4, retry=Backoff(first_s=0.001, cap_s=0.01))
    for n in range(10):
        journal.append(_event(n))
    assert journal.buffered == 10
    await asyncio.wait_for(journal.settle(), 5)
    assert [e.payload["seq"] for e in await log.replay()] == list(range(10))
    assert journal.buffered == 0 and journal.appended == 10 and len(failures) == 3
    await journal.close()


async def test_a_full_buffer_refuses_the_new_event_and_keeps_an_ordered_prefix() -> None:
    log = RefusingFirst(refusals=1_000_000)
    failures: list[int] = []
    journal = Journal(log, lambda: failures.append(1), capacity=5, retry=Backoff(first_s=0.001, cap_s=0.01))
    for n in range(8):
        journal.append(_event(n))
    assert journal.buffered == 5 and journal.dropped == 3
    log.refusals = 0
    await asyncio.wait_for(journal.settle(), 5)
    assert [e.payload["seq"] for e in await log.replay()] == [0, 1, 2, 3, 4]
    await journal.close()
