"""Backups, the pure part: names, the manifest, and which backups retention removes.

A backup is a folder ``<prefix>/<id>/`` in the destination, ``id`` the UTC time it started
(``20261205T230000Z``), holding:

    redis.rdb          the Redis snapshot (``redis-cli --rdb``: channel histories, presence, the event log,
                       people's cached state), restored as ``dump.rdb``
    events.jsonl.gz    the event log, one entry a line: {"id": <log id>, "event": <Event.to_dict()>}
    manifest.json      written last: each file's size and SHA-256, the event log's first and last id and
                       count; a folder without it is an unfinished backup and is never restored

Retention keeps every backup younger than the retention period, and always the newest complete one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

MANIFEST = "manifest.json"
RDB = "redis.rdb"
EVENTS = "events.jsonl.gz"
FORMAT_VERSION = 1
_ID_FORMAT = "%Y%m%dT%H%M%SZ"
_PERIOD = re.compile(r"^([1-9][0-9]*)([hdw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


class BackupError(Exception):
    """A backup that cannot be made, listed or restored; the message says which and why."""


def backup_id(at: datetime) -> str:
    return at.astimezone(UTC).strftime(_ID_FORMAT)


def parse_backup_id(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, _ID_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_period(text: str) -> timedelta:
    """``30d``, ``12h``, ``4w`` → a timedelta; anything else is a BackupError naming the form."""
    match = _PERIOD.match(text)
    if match is None:
        raise BackupError(f"retention {text!r}: use a number and h, d or w (e.g. 7d)")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class FileEntry:
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    id: str
    cluster: str
    created: str
    files: dict[str, FileEntry]
    event_log: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "id": self.id,
            "cluster": self.cluster,
            "created": self.created,
            "files": {name: {"bytes": f.bytes, "sha256": f.sha256} for name, f in sorted(self.files.items())},
            "event_log": self.event_log,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> Manifest:
        try:
            if raw["version"] != FORMAT_VERSION:
                raise BackupError(f"manifest version {raw['version']} is not {FORMAT_VERSION}")
            files = {name: FileEntry(int(f["bytes"]), str(f["sha256"])) for name, f in raw["files"].items()}
            return cls(
                str(raw["id"]), str(raw["cluster"]), str(raw["created"]), files, dict(raw["event_log"])
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackupError(f"a malformed manifest: {exc!r}") from exc


def to_remove(
    complete: list[str], incomplete: list[str], *, now: datetime, retention: timedelta
) -> list[str]:
    """Backup ids retention removes: complete ones older than ``retention`` except the newest complete,
    and unfinished ones older than ``retention`` (a running backup is younger than that)."""
    oldest_kept = now - retention
    dated = sorted((parse_backup_id(i), i) for i in complete if parse_backup_id(i) is not None)
    newest = dated[-1][1] if dated else None
    gone = [i for at, i in dated if at is not None and at < oldest_kept and i != newest]
    for i in incomplete:
        at = parse_backup_id(i)
        if at is not None and at < oldest_kept:
            gone.append(i)
    return sorted(gone)
