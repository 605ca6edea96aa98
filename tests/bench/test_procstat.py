"""Reading server memory and CPU from /proc."""

from __future__ import annotations

import os
import time

import pytest

from bench.load import procstat


def test_parses_this_process() -> None:
    with open("/proc/self/status") as status:
        assert procstat.parse_vm_rss_kib(status.read()) > 1000
    sample = procstat.sample([os.getpid()])
    assert sample.rss_kib > 1000
    assert sample.cpu_s > 0


def test_rss_grows_with_memory_held() -> None:
    before = procstat.sample([os.getpid()]).rss_kib
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    after = procstat.sample([os.getpid()]).rss_kib
    assert after - before > 50 * 1024
    del block


def test_cpu_time_counts_work_done() -> None:
    before = procstat.sample([os.getpid()])
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = procstat.sample([os.getpid()])
    assert after.cpu_s - before.cpu_s >= 0.2
    assert procstat.cores_used(before, after, 1.0) == pytest.approx(after.cpu_s - before.cpu_s)


def test_command_names_with_spaces_and_parentheses() -> None:
    fields = " ".join(str(n) for n in range(3, 53))
    text = f"4242 (we (ird) name) {fields}"
    # field 14 is utime and 15 is stime: the numbers 14 and 15 in this synthetic line.
    assert procstat.parse_cpu_ticks(text) == 14 + 15


def test_missing_or_malformed_rss_is_an_error() -> None:
    with pytest.raises(ValueError, match="VmRSS"):
        procstat.parse_vm_rss_kib("Name: x\n")
    with pytest.raises(ValueError, match="VmRSS"):
        procstat.parse_vm_rss_kib("VmRSS:\n")
    with pytest.raises(ValueError, match="positive"):
        procstat.cores_used(procstat.Sample(0, 0.0), procstat.Sample(0, 1.0), 0)


def test_summing_over_processes() -> None:
    one = procstat.sample([os.getpid()])
    two = procstat.sample([os.getpid(), os.getpid()])
    assert two.rss_kib >= 2 * one.rss_kib - 2048
