"""Drain planner: hand a worker's clients over in batches, within a reconnect budget.

When a revision loses a rollout (promotion or rollback), its Pods leave new
traffic and close their sockets gradually; clients reconnect to the winning
revision and resume through recovery. Closing everything at once is the
reconnect stampede Argo Rollouts and Flagger users hit (argoproj/argo-rollouts#3761,
fluxcd/flagger#1600), so the cluster has a budget of reconnects per second and
every draining Pod takes a fixed share of it.

Pure: ``now`` and the RNG seed are arguments; the transport turns the plan into
timers and close frames.

**Budget shares.** With a cluster budget of ``R`` reconnects per second over
``n`` draining Pods (``pod_index`` 0..n-1), time is cut into whole seconds of the
shared clock (absolute ``[s, s+1)``):

* ``R >= n``: every second, Pod ``j`` closes ``R // n`` sockets, plus one if
  ``j < R % n`` — the shares add up to exactly ``R``.
* ``R < n``: Pods take turns, one socket each in the seconds ``s`` with
  ``s % ceil(n / R) == j % ceil(n / R)``; at most ``ceil(n / ceil(n/R)) <= R``
  Pods close a socket in any one second.

So however the Pods' plans interleave, no second of the shared clock sees more
than ``R`` closes — provided the Pods' clocks agree to well under a second.

**Spreading.** The closes are spread over at least ``window_seconds`` (fewer per
second than the share when the window allows), jittered inside each second by
the seeded RNG, and in an order shuffled by the same seed.

**Leaving.** A Pod may go once at most ``remaining_threshold`` of its sockets
are still open, or at the ``deadline`` whatever remains (those are cut by the
exit; ``left_at_exit`` lists them). Nothing is scheduled at or after the
deadline.

Worked example: 10 sockets, budget 4/s over 2 Pods (share 2/s), window 10 s,
threshold 2, deadline 200, ``now`` 100.0 → ten seconds fit in the window, so one
close in each of [100, 101), [101, 102), ... [109, 110); the Pod may go right
after the 8th close (in [107, 108)), with 2 sockets left to cut.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class DrainShare:
    """This Pod's part of the cluster budget: ``per_slot`` closes in every second ``s``
    with ``s % every_seconds == phase``."""

    per_slot: int
    every_seconds: int
    phase: int

    def allows(self, second: int) -> bool:
        return second % self.every_seconds == self.phase


def share_of_budget(reconnects_per_second: int, draining_pods: int, pod_index: int) -> DrainShare:
    """Pod ``pod_index``'s share of the cluster budget.

    >>> share_of_budget(10, 3, 0), share_of_budget(10, 3, 2)
    (DrainShare(per_slot=4, every_seconds=1, phase=0), DrainShare(per_slot=3, every_seconds=1, phase=0))
    >>> share_of_budget(2, 5, 3)
    DrainShare(per_slot=1, every_seconds=3, phase=0)
    """
    if reconnects_per_second < 1 or draining_pods < 1 or not 0 <= pod_index < draining_pods:
        raise ValueError(
            f"need a budget >= 1, >= 1 draining Pod and 0 <= index < pods"
            f" (got {reconnects_per_second}, {draining_pods}, {pod_index})"
        )
    if reconnects_per_second >= draining_pods:
        base, extra = divmod(reconnects_per_second, draining_pods)
        return DrainShare(base + (pod_index < extra), 1, 0)
    every = math.ceil(draining_pods / reconnects_per_second)
    return DrainShare(1, every, pod_index % every)


@dataclasses.dataclass(frozen=True)
class DrainPolicy:
    reconnects_per_second: int
    """The whole cluster's budget."""
    draining_pods: int
    pod_index: int
    window_seconds: float
    """Spread the closes over at least this long."""
    remaining_threshold: int
    """The Pod may go once at most this many sockets remain."""
    deadline: float
    """Absolute time after which the Pod goes whatever remains."""


@dataclasses.dataclass(frozen=True)
class Disconnect:
    at: float
    connection_id: str


@dataclasses.dataclass(frozen=True)
class Batch:
    """The closes of one second ``[second, second + 1)`` of the shared clock."""

    second: int
    disconnects: tuple[Disconnect, ...]


@dataclasses.dataclass(frozen=True)
class DrainPlan:
    share: DrainShare
    batches: tuple[Batch, ...]
    may_exit_at: float
    left_at_exit: tuple[str, ...]

    @property
    def disconnects(self) -> tuple[Disconnect, ...]:
        return tuple(d for batch in self.batches for d in batch.disconnects)

    def due(self, after: float, until: float) -> tuple[str, ...]:
        """Connections to close in ``(after, until]`` — what a timer firing at ``until`` should do."""
        return tuple(d.connection_id for d in self.disconnects if after < d.at <= until)


def plan_drain(connection_ids: Iterable[str], policy: DrainPolicy, now: float, seed: int) -> DrainPlan:
    """Who to disconnect when, and when the Pod may go."""
    share = share_of_budget(policy.reconnects_per_second, policy.draining_pods, policy.pod_index)
    rng = random.Random(seed)
    order = sorted(set(connection_ids))
    rng.shuffle(order)
    total = len(order)
    if total <= policy.remaining_threshold or now >= policy.deadline:
        return DrainPlan(share, (), now, tuple(order))

    first = math.ceil(now)
    last = math.ceil(policy.deadline)  # seconds s < last may hold closes before the deadline
    slots = [s for s in range(first, last) if share.allows(s)]
    window_end = now + max(policy.window_seconds, 0.0)
    in_window = sum(1 for s in slots if s < window_end)
    needed_at_full_rate = math.ceil(total / share.per_slot)
    per_slot = share.per_slot if in_window < needed_at_full_rate else math.ceil(total / in_window)

    batches: list[Batch] = []
    position = 0
    for second in slots:
        if position >= total:
            break
        end = min(second + 1.0, policy.deadline)
        chunk = order[position : position + per_slot]
        # Strictly before ``end``: a slot ending 2e-16 s after its second rounds ``second + r * width``
        # up to the deadline itself.
        latest = math.nextafter(end, second)
        times = sorted(min(second + rng.random() * (end - second), latest) for _ in chunk)
        batches.append(Batch(second, tuple(Disconnect(t, c) for t, c in zip(times, chunk, strict=True))))
        position += len(chunk)

    closes = [d for batch in batches for d in batch.disconnects]
    must_close = total - policy.remaining_threshold
    may_exit_at = closes[must_close - 1].at if len(closes) >= must_close else policy.deadline
    return DrainPlan(share, tuple(batches), may_exit_at, tuple(order[position:]))


def may_exit(open_connections: int, policy: DrainPolicy, now: float) -> bool:
    """The live check: clients also leave on their own, so the count may beat the plan."""
    return open_connections <= policy.remaining_threshold or now >= policy.deadline
