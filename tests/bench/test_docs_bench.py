"""The shared-documents benchmark's own arithmetic: its variants and the workers' histograms it reads."""

from __future__ import annotations

import argparse
import math

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.docs.run import cpu_list, histogram_quantiles, merge, parse_variant

ARGS = argparse.Namespace(procs=2, nice=0, observers=0)


def test_variants_name_processes_niceness_observers_mains_provider_and_the_baseline_workers() -> None:
    assert parse_variant("yjs", ARGS) == {
        "mode": "yjs",
        "procs": 2,
        "nice": 0,
        "observers": 0,
        "provider": "this",
        "workers": "this",
        "window": 0,
        "fast_ms": 0,
        "semi_space": 0,
        "single_gc": False,
    }
    assert parse_variant("yjs/p10/n5/o4/main", ARGS) == {
        "mode": "yjs", "procs": 10, "nice": 5, "observers": 4, "provider": "main", "workers": "this",
        "window": 0, "fast_ms": 0, "semi_space": 0, "single_gc": False,
    }  # fmt: skip
    assert parse_variant("yjs/main/base/w2/f500", ARGS) == {
        "mode": "yjs", "procs": 2, "nice": 0, "observers": 0, "provider": "main", "workers": "base",
        "window": 2, "fast_ms": 500, "semi_space": 0, "single_gc": False,
    }  # fmt: skip
    heap = parse_variant("yjs/s64/g", ARGS)
    assert heap["semi_space"] == 64 and heap["single_gc"]
    assert heap | {"semi_space": 0, "single_gc": False} == parse_variant("yjs", ARGS)
    for bad in ("yjs/x3", "yjs/p", "yjs/g2", "crdt"):
        with pytest.raises(SystemExit, match="unknown"):
            parse_variant(bad, ARGS)


def samples(registry: CollectorRegistry) -> dict[str, float]:
    """As the benchmark reads /metrics: each sample line's name (with labels) and value."""
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_quantiles_come_from_what_two_workers_histograms_gained_during_the_run() -> None:
    workers = [CollectorRegistry(), CollectorRegistry()]
    histograms = [Histogram("h_seconds", "h", buckets=(0.001, 0.01, 0.1), registry=r) for r in workers]
    for _ in range(50):
        histograms[0].observe(5.0)  # before the run: must not count
    before = [samples(r) for r in workers]
    for _ in range(98):
        histograms[0].observe(0.0005)
    histograms[1].observe(0.05)
    histograms[1].observe(0.05)
    gained = [merge(b, samples(r), "h_seconds") for b, r in zip(before, workers, strict=True)]
    assert gained[0][math.inf] == 98 and gained[1][0.1] == 2
    assert histogram_quantiles(gained, (50, 98, 99)) == {
        "n": 100,
        "p50_le": 1.0,
        "p98_le": 1.0,
        "p99_le": 100.0,
    }
    assert histogram_quantiles([{}], (99,)) == {"n": 0, "p99_le": None}


def test_cpu_lists_are_read_as_taskset_reads_them() -> None:
    assert cpu_list("0") == [0]
    assert cpu_list("0,2-4") == [0, 2, 3, 4]
