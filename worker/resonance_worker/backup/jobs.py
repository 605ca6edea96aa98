"""What a backup Job and a restore do, over a :class:`~resonance_worker.backup.destination.Destination`.

``backup``: the RDB snapshot (from a replica when Sentinel names one), then the event log exported
line by line, then the manifest (last: a folder without it is unfinished and never restored), then
retention removes what is past it (never the newest complete backup).

Restore (docs/operator.md "Restore", followed by tests/worker/test_backup.py):

1. ``restore-redis``: the backup's RDB, checked against its manifest, becomes ``dump.rdb`` in the
   (stopped) Redis's data directory; Redis is started with ``appendonly no`` so it loads it, then
   ``CONFIG SET appendonly yes`` writes an AOF from the loaded data.
2. ``rebuild-graph``: the graph is a projection of the event log, so it is rebuilt by replay: the
   projector's consumer group is moved back to the start of the (restored) log and every worker's
   projector writes the graph again (idempotent on event ids), into an empty or wiped Neo4j.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError, ResponseError

from resonance_worker.backup.destination import Destination, file_sha256
from resonance_worker.backup.plan import (
    EVENTS,
    MANIFEST,
    RDB,
    BackupError,
    FileEntry,
    Manifest,
    backup_id,
    to_remove,
)
from resonance_worker.backup.snapshot import take_snapshot
from resonance_worker.eventlog.base import DEFAULT_GROUP
from resonance_worker.redis_client import RedisConnector

logger = logging.getLogger("resonance.backup")
_PAGE = 1000


@dataclass(frozen=True)
class BackupResult:
    id: str
    manifest: Manifest
    removed: list[str]


async def _export_events(connector: RedisConnector, key: str, target: Path) -> dict[str, Any]:
    """The event log, one JSON line per entry ``{"id", "e"}`` (``e``: the event's stored JSON)."""
    client = connector.client(timeout=10.0, socket_timeout=60.0, retries=2)
    count, low = 0, "-"
    first: str | None = None
    last: str | None = None
    try:
        with gzip.open(target, "wt", encoding="utf-8") as out:
            while True:
                page: Any = await client.xrange(key, low, "+", count=_PAGE)
                for raw_id, fields in page:
                    entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                    body = fields.get(b"e", b"")
                    out.write(json.dumps({"id": entry_id, "e": body.decode("utf-8", "replace")}) + "\n")
                    first, last, count = first or entry_id, entry_id, count + 1
                if len(page) < _PAGE:
                    break
                low = f"({last}"
    finally:
        await client.aclose()
    return {"key": key, "entries": count, "first": first, "last": last}


async def backup(
    connector: RedisConnector,
    destination: Destination,
    *,
    cluster: str,
    prefix: str,
    retention: timedelta | None,
    now: datetime | None = None,
) -> BackupResult:
    started = now or datetime.now(UTC)
    ident = backup_id(started)
    replicas = await connector.replicas()
    host, port = replicas[0] if replicas else (None, None)
    if connector.mode.value == "sentinel" and not replicas:
        host, port = await connector.primary() or (None, None)
    with tempfile.TemporaryDirectory(prefix="resonance-backup-") as work:
        rdb, events = Path(work) / RDB, Path(work) / EVENTS
        size, digest = await take_snapshot(
            connector.url, rdb, host=host, port=port, tls=connector.tls_context()
        )
        event_log = await _export_events(connector, f"{prefix}.events", events)
        files = {RDB: FileEntry(size, digest), EVENTS: FileEntry(events.stat().st_size, file_sha256(events))}
        manifest = Manifest(ident, cluster, started.isoformat(), files, event_log)
        await destination.put(ident, RDB, rdb)
        await destination.put(ident, EVENTS, events)
        manifest_path = Path(work) / MANIFEST
        manifest_path.write_text(json.dumps(manifest.to_dict(), indent=2))
        await destination.put(ident, MANIFEST, manifest_path)
    removed: list[str] = []
    if retention is not None:
        complete, incomplete = await destination.backups()
        removed = to_remove(complete, incomplete, now=started, retention=retention)
        for old in removed:
            await destination.remove(old)
    logger.info(
        "backup %s: %d bytes of RDB, %d events, removed %s", ident, size, event_log["entries"], removed
    )
    return BackupResult(ident, manifest, removed)


async def read_manifest(destination: Destination, ident: str) -> Manifest:
    """The manifest of backup ``ident`` (``latest``: the newest complete one)."""
    complete, _ = await destination.backups()
    if ident == "latest":
        if not complete:
            raise BackupError("there is no complete backup to restore")
        ident = complete[-1]
    elif ident not in complete:
        raise BackupError(f"backup {ident!r} is not a complete backup (complete: {complete[-5:]})")
    with tempfile.TemporaryDirectory(prefix="resonance-restore-") as work:
        path = Path(work) / MANIFEST
        await destination.get(ident, MANIFEST, path)
        return Manifest.from_dict(json.loads(path.read_text()))


async def fetch_checked(destination: Destination, manifest: Manifest, name: str, target: Path) -> None:
    """Download one file of a backup to ``target``, refusing it unless its SHA-256 is the manifest's."""
    expected = manifest.files.get(name)
    if expected is None:
        raise BackupError(f"backup {manifest.id} has no {name}")
    partial = target.with_name(target.name + ".partial")
    await destination.get(manifest.id, name, partial)
    digest = file_sha256(partial)
    if digest != expected.sha256:
        partial.unlink()
        raise BackupError(
            f"backup {manifest.id}: {name} has SHA-256 {digest}, the manifest says {expected.sha256}"
        )
    partial.replace(target)


async def restore_redis(destination: Destination, ident: str, data_dir: Path) -> Manifest:
    """Step 1: the backup's RDB as ``dump.rdb`` in ``data_dir`` (Redis stopped; see the module doc)."""
    manifest = await read_manifest(destination, ident)
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    await fetch_checked(destination, manifest, RDB, data_dir / "dump.rdb")
    return manifest


async def rebuild_graph(connector: RedisConnector, prefix: str, group: str = DEFAULT_GROUP) -> int:
    """Step 2: the projector's group back to the log's start; returns the entries it will replay."""
    client = connector.client(timeout=10.0, socket_timeout=10.0, retries=2)
    key = f"{prefix}.events"
    try:
        try:
            await client.xgroup_setid(key, group, "0")
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # No group yet: the first projector creates it at the log's start (eventlog.redis).
        return int(await client.xlen(key))
    except RedisError as exc:
        raise BackupError(f"rebuild-graph: cannot rewind {group!r} on {key!r}: {exc}") from exc
    finally:
        await client.aclose()


def events_of(path: Path) -> list[dict[str, Any]]:
    """The event log lines of a downloaded ``events.jsonl.gz`` (for inspection and tests)."""
    with gzip.open(path, "rt", encoding="utf-8") as source:
        return [json.loads(line) for line in source if line.strip()]
