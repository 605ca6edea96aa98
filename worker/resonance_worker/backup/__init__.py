"""Backups of a cluster's Redis (an RDB snapshot) and event log, to a directory or S3, and restore.

``plan`` (pure: ids, manifest, retention) and ``sigv4`` (pure: S3 request signing) < ``destination``
(directory | S3) and ``snapshot`` (the RDB over the replication protocol) < ``jobs`` (backup, restore
steps) < ``__main__`` (the CronJob's command line). Runs as its own process (the operator's backup
Job, or by hand for a restore), never inside a serving worker. The procedure: docs/operator.md.
"""
