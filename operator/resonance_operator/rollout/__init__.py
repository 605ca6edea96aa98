"""Rollouts that respect WebSockets: pure replica math, the step machine and analysis.

Nothing here does I/O or reads a clock: every decision takes ``now`` and the
observed state as arguments and returns what to do next (including "wait N s"),
so the reconciler can apply it and requeue. See ``docs/rollouts.md``.
"""
