"""Retry delays: double from a first delay up to a cap, with jitter.

Every retry loop of the worker waits this way: the Redis engine's pub/sub reconnect, the JWKS
refresh, the Neo4j schema at start-up and the graph projector. The jitter (× 0.5-1.0 of the
ceiling) keeps a fleet of workers restarted together from retrying in step. Pure: the caller
counts the attempts, passes its random source (``random.uniform`` or a seeded ``Random().uniform``)
and sleeps::

    retry = Backoff(first_s=1.0, cap_s=30.0)
    attempt = 0
    while not await try_once():
        await asyncio.sleep(retry.delay(attempt, random.uniform))
        attempt += 1
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Uniform = Callable[[float, float], float]
"""A random source: ``uniform(a, b)`` returns a number between ``a`` and ``b``."""

JITTER = (0.5, 1.0)
"""The delay is the ceiling times a random factor in this range."""

_MAX_DOUBLINGS = 60
"""2⁶⁰ × any sensible first delay is past any cap: no float overflow for a long outage."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of ``first_s``, then twice as long each attempt, never above ``cap_s`` (both > 0)."""

    first_s: float
    cap_s: float

    def __post_init__(self) -> None:
        for name in ("first_s", "cap_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry ``attempt`` (0 for the first retry after a failure)."""
        return min(self.cap_s, self.first_s * 2.0 ** min(max(attempt, 0), _MAX_DOUBLINGS))

    def delay(self, attempt: int, uniform: Uniform) -> float:
        """The wait before retry ``attempt``: its ceiling × a factor drawn from ``uniform`` in ``JITTER``."""
        return self.ceiling(attempt) * uniform(*JITTER)
