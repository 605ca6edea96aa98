"""Server memory and CPU from /proc (Linux): parsers are pure, readers are one-line wrappers."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_vm_rss_kib(status_text: str) -> int:
    """``VmRSS`` in KiB from the text of /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            if len(fields) < 2 or not fields[1].isdigit():
                break
            return int(fields[1])
    raise ValueError("no VmRSS line in /proc status")


def parse_cpu_ticks(stat_text: str) -> int:
    """utime + stime (clock ticks) from the text of /proc/<pid>/stat.

    The command name (field 2) may contain spaces and parentheses, so fields are counted after the last ')'.
    """
    tail = stat_text[stat_text.rindex(")") + 2 :].split()
    # tail[0] is field 3 (state): utime and stime are fields 14 and 15.
    return int(tail[11]) + int(tail[12])


@dataclasses.dataclass(frozen=True)
class Sample:
    """RSS (KiB) and CPU time (seconds) summed over a set of processes at one instant."""

    rss_kib: int
    cpu_s: float


def sample(pids: Iterable[int]) -> Sample:
    rss, ticks = 0, 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            rss += parse_vm_rss_kib(status.read())
        with open(f"/proc/{pid}/stat") as stat:
            ticks += parse_cpu_ticks(stat.read())
    return Sample(rss_kib=rss, cpu_s=ticks / CLOCK_TICKS)


def cores_used(before: Sample, after: Sample, wall_s: float) -> float:
    """Average cores busy between two samples."""
    if wall_s <= 0:
        raise ValueError("wall time must be positive")
    return (after.cpu_s - before.cpu_s) / wall_s
