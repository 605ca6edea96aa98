"""Five-field cron schedules, as a Kubernetes CronJob reads them: when is the next run after a time.

Pure. Fields: minute hour day-of-month month day-of-week, each ``*``, a number, a range ``a-b``, a step
``*/n`` or ``a-b/n``, or a comma list of those; day-of-week 0-7 (0 and 7 are Sunday). As in Vixie cron,
when both day fields are restricted a day matching either runs. Macros: ``@hourly``, ``@daily``
(``@midnight``), ``@weekly``, ``@monthly``, ``@yearly`` (``@annually``). Times are UTC (the CronJob's
default time zone is the controller's; the operator sets ``timeZone: Etc/UTC``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")


class CronError(ValueError):
    """A schedule that is not five valid cron fields (the message names the field)."""


def _field(text: str, index: int) -> frozenset[int]:
    low, high = _BOUNDS[index]
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                a, b = base.split("-", 1)
                start, end = int(a), int(b)
            else:
                start = end = int(base)
        except ValueError:
            raise CronError(f"{_NAMES[index]}: {part!r} is not a number, range or step") from None
        if step < 1 or not low <= start <= end <= high:
            raise CronError(f"{_NAMES[index]}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> Schedule:
        fields = MACROS.get(text.strip(), text).split()
        if len(fields) != 5:
            raise CronError(
                f"{text!r}: a schedule has five fields (minute hour day month weekday) or is a macro"
            )
        minutes, hours, days, months, weekdays = (_field(f, i) for i, f in enumerate(fields))
        return cls(
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted=fields[2] != "*",
            weekdays_restricted=fields[4] != "*",
        )

    def _day_matches(self, at: datetime) -> bool:
        weekday = (at.weekday() + 1) % 7  # Python: Monday 0; cron: Sunday 0
        by_day, by_weekday = at.day in self.days, weekday in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return by_day or by_weekday
        return by_day and by_weekday

    def next_after(self, after: datetime) -> datetime:
        """The first run strictly after ``after`` (to the minute). Raises CronError for a schedule that
        never runs (e.g. February 30th) — found within eight years."""
        at = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = at + timedelta(days=366 * 8)
        while at < limit:
            if at.month not in self.months:
                at = (at.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(at):
                at = at.replace(hour=0, minute=0) + timedelta(days=1)
            elif at.hour not in self.hours:
                at = at.replace(minute=0) + timedelta(hours=1)
            elif at.minute not in self.minutes:
                at += timedelta(minutes=1)
            else:
                return at
        raise CronError("the schedule never runs")
