"""``python -m resonance_worker.backup <command>``: the backup Job and the restore steps.

Commands: ``backup`` (what the CronJob runs), ``list``, ``restore-redis <id|latest> <data dir>``,
``rebuild-graph``. Exit status 0 on success, 1 with a one-line reason on stderr otherwise (the Job
fails, and the operator reports the failure in ``status.backup.lastFailure``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from resonance_worker.backup.destination import S3Destination
from resonance_worker.backup.jobs import backup, read_manifest, rebuild_graph, restore_redis
from resonance_worker.backup.plan import BackupError, parse_period
from resonance_worker.backup.settings import BackupSettings
from resonance_worker.redis_client import RedisConnector
from resonance_worker.settings import RedisMode, WorkerSettings


async def _run(args: argparse.Namespace) -> dict[str, object]:
    settings = BackupSettings()
    destination = settings.open()
    if args.command in ("backup", "list", "restore-redis") and isinstance(destination, S3Destination):
        await destination.ensure_bucket()
    if args.command == "list":
        complete, incomplete = await destination.backups()
        return {"complete": complete, "incomplete": incomplete}
    if args.command == "restore-redis":
        manifest = await restore_redis(destination, args.id, Path(args.data_dir))
        return {"restored": manifest.id, "into": str(Path(args.data_dir) / "dump.rdb")}
    worker = WorkerSettings()
    if args.command == "backup" and worker.redis_mode is RedisMode.CLUSTER:
        raise BackupError(
            "a Redis Cluster is not backed up by this job (one RDB is one shard's): back its shards up with "
            "the Cluster's own tools; rebuild-graph still replays the event log"
        )
    connector = RedisConnector.from_settings(worker)
    try:
        if args.command == "rebuild-graph":
            return {"replaying": await rebuild_graph(connector, worker.redis_prefix)}
        retention = parse_period(settings.retention) if settings.retention else None
        done = await backup(
            connector, destination, cluster=settings.cluster, prefix=worker.redis_prefix, retention=retention
        )
        manifest = await read_manifest(destination, done.id)
        return {"backup": done.id, "event_log": manifest.event_log, "removed": done.removed}
    finally:
        await connector.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resonance_worker.backup")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("backup", help="take a backup now (the CronJob's command)")
    commands.add_parser("list", help="list complete and unfinished backups")
    restore = commands.add_parser("restore-redis", help="a backup's RDB as dump.rdb in a data directory")
    restore.add_argument("id", help="a backup id, or latest")
    restore.add_argument("data_dir")
    commands.add_parser("rebuild-graph", help="replay the event log into the graph (rewind the projector)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        print(json.dumps(asyncio.run(_run(args))))
    except BackupError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
