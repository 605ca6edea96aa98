"""Offline benchmarks: they print numbers and write JSON under bench/results/."""
