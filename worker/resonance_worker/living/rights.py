"""Data rights: export and erase everything kept about a person, and retention per kind
(docs/data-rights.md). The server API (``user.export``, ``user.erase``) and the retention loop
call :class:`DataRights`; which record is whose, and of which kind, is ``domain.datarights``.

Where a person's data is kept, and how it is found:

=================  ==============================================  ===============================
store              what                                            found by
=================  ==============================================  ===============================
channel history    publications by them, in their ``#`` channels,  a scan of every kept stream
                   room messages naming them
presence           their presence entries                          a scan of presence hashes
person state       ``domain.keys.USER_KINDS``                      their key names
event log          events about them or naming them                a scan of the log (XRANGE)
graph              their node, states, questions, relations,       Cypher by id (``graph.rights``)
                   resonance results they took part in
this worker        room membership, live state in memory           ``Living.erase``
=================  ==============================================  ===============================

The event log is one stream for every person: erasing one person is a scan of it and ``XDEL`` of
their entries (bounded by the log's retention, about a million entries: seconds), chosen over
crypto-shredding (a key per person, deleted to make their entries unreadable) because the
projector and ``events.replay`` read the log in clear and an erasure is rare. A person's events
still buffered in this worker's journal are appended before the erasure starts (it waits for the
journal, up to ``JOURNAL_WAIT_S``). Backups taken before an erasure still hold the data until they
expire with the backup retention (docs/data-rights.md says so to the person).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from resonance_worker.domain.consent import DataKind
from resonance_worker.domain.datarights import EVENT_KINDS, event_concerns
from resonance_worker.domain.protocol import client_info_json, publication_json
from resonance_worker.errors import EngineError
from resonance_worker.living.outbox import Journal
from resonance_worker.settings import DataSettings
from resonance_worker.storage import Storage

JOURNAL_WAIT_S = 5.0
"""How long an erasure waits for this worker's journal to append what it holds."""


class DataRightsUnavailableError(EngineError):
    """A store needed for an export or erasure is away; nothing was half-erased that a retry would miss."""


class DataRights:
    """Export, erase and retention over every store of one worker's :class:`Storage`."""

    def __init__(
        self,
        storage: Storage,
        settings: DataSettings,
        *,
        journal: Journal | None = None,
        forget: Callable[[str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self._journal = journal
        self._forget = forget
        self._clock = clock

    async def export(self, user: str) -> dict[str, Any]:
        """Everything kept about ``user``, as JSON-ready data."""
        personal = await self.storage.personal.personal_data(user)
        found = await self.storage.event_log.select(lambda event: event_concerns(event, user))
        graph = self.storage.graph
        return {
            "user": user,
            "channels": {
                channel: [publication_json(p) for p in publications]
                for channel, publications in sorted(personal.publications.items())
            },
            "presence": {
                channel: {client: client_info_json(info) for client, info in clients.items()}
                for channel, clients in sorted(personal.presence.items())
            },
            "person": personal.person,
            "events": [event.to_dict() for _, event in found],
            "graph": None if graph is None else await graph.export_user(user),
        }

    async def erase(self, user: str) -> dict[str, Any]:
        """Remove everything kept about ``user``; what was removed, by store."""
        if self._forget is not None:
            await self._forget(user)
        if self._journal is not None:
            try:
                async with asyncio.timeout(JOURNAL_WAIT_S):
                    await self._journal.settle()
            except TimeoutError:
                raise DataRightsUnavailableError(
                    "the event log is away (events still buffered): nothing erased, retry later"
                ) from None
        removed: dict[str, Any] = dict(await self.storage.personal.erase_personal(user))
        log = self.storage.event_log
        found = await log.select(lambda event: event_concerns(event, user))
        removed["events"] = await log.delete([log_id for log_id, _ in found])
        graph = self.storage.graph
        removed["graph"] = None if graph is None else await graph.erase_user(user)
        return removed

    @property
    def retains(self) -> bool:
        """Whether any kind has a retention limit (else there is nothing to expire)."""
        s = self.settings
        return any((s.retention_biometrics_seconds, s.retention_emotions_seconds, s.retention_graph_seconds))

    async def expire(self) -> dict[str, int]:
        """Remove what is past its kind's retention from channel history, the event log and the graph."""
        now = self._clock()
        s = self.settings
        removed = {"publications": 0, "events": 0, "graph": 0}
        personal = self.storage.personal
        if s.retention_biometrics_seconds:
            cutoff_ms = int((now - s.retention_biometrics_seconds) * 1000)
            removed["publications"] += await personal.expire_history("bio", cutoff_ms)
        if s.retention_emotions_seconds:
            cutoff = now - s.retention_emotions_seconds
            removed["publications"] += await personal.expire_history("room", int(cutoff * 1000))
            log = self.storage.event_log
            # Log ids are append times, never earlier than the event's own time by much: scanning up to the
            # cutoff finds every event appended before it.
            found = await log.select(
                lambda event: EVENT_KINDS.get(event.type) is DataKind.EMOTIONS and event.at < cutoff,
                until_ms=int(cutoff * 1000),
            )
            removed["events"] = await log.delete([log_id for log_id, _ in found])
        graph = self.storage.graph
        if graph is not None and (s.retention_emotions_seconds or s.retention_graph_seconds):
            removed["graph"] = await graph.expire(
                emotions_before=now - s.retention_emotions_seconds if s.retention_emotions_seconds else None,
                graph_before=now - s.retention_graph_seconds if s.retention_graph_seconds else None,
            )
        return removed
