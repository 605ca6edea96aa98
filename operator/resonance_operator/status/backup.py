"""``status.backup`` and the ``BackupSucceeded`` condition, from the backup CronJob as observed (pure).

A CronJob's status says when a Job last started (``lastScheduleTime``), when one last completed
(``lastSuccessfulTime``) and which run now (``active``); the next run comes from the schedule
(``api/cron.py``: a CronJob's status has no next time). A run that started after the last success and
is no longer active did not complete: that is ``lastFailure`` and the condition turns False, until a
later run succeeds. Only with ``spec.backup``.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from resonance_operator.api import cron
from resonance_operator.api.conditions import BackupReason, ConditionStatus, ConditionType
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.desired import backup as backup_child
from resonance_operator.status.conditions import Stamp


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(cluster: ResonanceCluster, observed: Observed, now: str) -> dict[str, Any] | None:
    spec = cluster.spec.backup
    if spec is None:
        return None
    body = observed.child(ChildKey("batch/v1", "CronJob", backup_child.name(cluster))) or {}
    found = body.get("status") or {}
    last_schedule, last_success = _time(found.get("lastScheduleTime")), _time(found.get("lastSuccessfulTime"))
    active = len(found.get("active") or [])
    result: dict[str, Any] = {"schedule": spec.schedule, "active": active}
    if last_schedule is not None:
        result["lastSchedule"] = _iso(last_schedule)
    if last_success is not None:
        result["lastSuccess"] = _iso(last_success)
    if last_schedule is not None and active == 0 and (last_success is None or last_success < last_schedule):
        result["lastFailure"] = _iso(last_schedule)
    at = _time(now)
    if at is not None and not spec.suspend:
        with contextlib.suppress(cron.CronError):  # an invalid schedule is reported by api/validation.py
            result["next"] = _iso(cron.Schedule.parse(spec.schedule).next_after(at))
    return result


def condition(found: dict[str, Any], stamp: Stamp) -> dict[str, Any]:
    if "lastFailure" in found:
        return stamp(
            ConditionType.BACKUP_SUCCEEDED,
            ConditionStatus.FALSE,
            BackupReason.LAST_BACKUP_FAILED,
            f"the backup started at {found['lastFailure']} did not complete; see the backup Job's log",
        )
    if "lastSuccess" in found:
        return stamp(
            ConditionType.BACKUP_SUCCEEDED,
            ConditionStatus.TRUE,
            BackupReason.LAST_BACKUP_SUCCEEDED,
            f"last backup completed at {found['lastSuccess']}",
        )
    if found.get("active"):
        return stamp(
            ConditionType.BACKUP_SUCCEEDED,
            ConditionStatus.UNKNOWN,
            BackupReason.BACKUP_RUNNING,
            "first backup running",
        )
    return stamp(
        ConditionType.BACKUP_SUCCEEDED,
        ConditionStatus.UNKNOWN,
        BackupReason.NO_BACKUP_YET,
        f"no backup yet; next at {found.get('next', 'the next scheduled time')}",
    )
