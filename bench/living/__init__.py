"""Benchmarks of the living core as the worker runs it."""
