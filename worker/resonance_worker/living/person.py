"""A person's living-core state in the engine, so it survives the worker: a drain, a rollout or a crash
moves the person to another worker, which continues from what is stored here instead of starting over.

Kept by the agreed key scheme (``domain/keys.py``: ``<prefix>.{u:<user>}.<kind>``), each kind with an
explicit TTL (``RESONANCE_LIVING__PERSON_TTL_SECONDS``, renewed by every write): the biometric baseline
(``person.baseline``, the stream's ``PersonalBaseline.to_dict``), the self-reports behind
self-understanding (``person.reports``) and the body samples they are paired with (``person.body``), the
newest ``REFLECT_HISTORY`` of each, and the rooms they joined (``person.rooms``, until they leave). A worker
reads a person once, at their first living call there (:meth:`PersonStore.load`), and writes each change as
it happens; a connection's first living call puts it back in the person's rooms. When the engine fails
the person carries on with what this worker holds (the pain is felt); nothing already stored is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from resonance_worker.domain import keys
from resonance_worker.domain.selfhood import BodySample, SelfReport
from resonance_worker.engines.base import Engine
from resonance_worker.errors import EngineError

log = logging.getLogger("resonance.worker.living")

KINDS = (keys.PERSON_BASELINE, keys.PERSON_REPORTS, keys.PERSON_BODY, keys.PERSON_ROOMS)


@dataclass
class Stored:
    """What the engine held of one person (each part empty when nothing was stored)."""

    baseline: dict[str, Any] | None = None
    reports: list[tuple[str, SelfReport]] = field(default_factory=list)
    body: list[BodySample] = field(default_factory=list)
    rooms: list[str] = field(default_factory=list)


def _json(raw: object) -> Any:
    """One stored JSON value; None when it is missing or does not parse."""
    if not isinstance(raw, bytes):
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _items(raw: bytes | list[bytes] | None) -> list[dict[str, Any]]:
    values = (_json(item) for item in (raw if isinstance(raw, list) else []))
    return [value for value in values if isinstance(value, dict)]


def decode(raw: dict[str, bytes | list[bytes]]) -> Stored:
    """The engine's values as the living core's; an entry that does not parse is skipped."""
    stored = Stored()
    baseline = _json(raw.get(keys.PERSON_BASELINE.name))
    stored.baseline = baseline if isinstance(baseline, dict) else None
    rooms = _json(raw.get(keys.PERSON_ROOMS.name))
    stored.rooms = [room for room in rooms if isinstance(room, str)] if isinstance(rooms, list) else []
    for item in _items(raw.get(keys.PERSON_REPORTS.name)):
        try:
            report = SelfReport(
                float(item["t"]), float(item["arousal"]), float(item["valence"]), item.get("label")
            )
        except (KeyError, TypeError, ValueError):
            continue
        stored.reports.append((str(item.get("session", "")), report))
    for item in _items(raw.get(keys.PERSON_BODY.name)):
        try:
            bpm = item.get("bpm")
            stored.body.append(
                BodySample(float(item["t"]), float(item["arousal"]), None if bpm is None else float(bpm))
            )
        except (KeyError, TypeError, ValueError):
            continue
    return stored


class PersonStore:
    """Reads and writes of people's state through the engine, with their TTL and history bound."""

    def __init__(
        self, engine: Engine, *, ttl_seconds: float, max_items: int, on_failure: Callable[[], None]
    ) -> None:
        self.engine = engine
        self.ttl_seconds = ttl_seconds
        self.max_items = max_items
        self.on_failure = on_failure

    async def load(self, user: str) -> Stored:
        try:
            raw = await self.engine.person_read(user, KINDS)
        except EngineError as exc:
            log.warning("person state not read", extra={"user": user, "error": str(exc)})
            self.on_failure()
            return Stored()
        return decode(raw)

    async def baseline(self, user: str, baseline: dict[str, Any]) -> None:
        await self._guard(
            self.engine.person_write(
                user, keys.PERSON_BASELINE, orjson.dumps(baseline), ttl_seconds=self.ttl_seconds
            ),
            user,
        )

    async def rooms(self, user: str, rooms: Collection[str]) -> None:
        await self._guard(
            self.engine.person_write(
                user, keys.PERSON_ROOMS, orjson.dumps(sorted(rooms)), ttl_seconds=self.ttl_seconds
            ),
            user,
        )

    async def report(self, user: str, session: str, report: SelfReport) -> None:
        item = {
            "session": session,
            "t": report.t,
            "arousal": report.arousal,
            "valence": report.valence,
            "label": report.label,
        }
        await self._append(user, keys.PERSON_REPORTS, [item])

    async def body(self, user: str, samples: Sequence[BodySample]) -> None:
        if samples:
            await self._append(
                user, keys.PERSON_BODY, [{"t": s.t, "arousal": s.arousal, "bpm": s.bpm} for s in samples]
            )

    async def _append(self, user: str, kind: keys.UserKind, items: list[dict[str, Any]]) -> None:
        await self._guard(
            self.engine.person_append(
                user,
                kind,
                [orjson.dumps(item) for item in items],
                max_items=self.max_items,
                ttl_seconds=self.ttl_seconds,
            ),
            user,
        )

    async def _guard(self, call: Any, user: str) -> None:
        try:
            await call
        except EngineError as exc:
            log.warning("person state not stored", extra={"user": user, "error": str(exc)})
            self.on_failure()
