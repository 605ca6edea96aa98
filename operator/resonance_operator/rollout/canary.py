"""Replica math for a basic (replica-ratio) canary, and HPA ranges during a rollout.

All functions are pure. Counts are Pod counts; weights are percentages of *new*
connections (a weight never moves a socket that is already open).
"""

from __future__ import annotations

import dataclasses
import math


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """``"25%"`` of ``total`` (rounded as Kubernetes rounds it) or a plain count.

    ``maxSurge`` rounds up and ``maxUnavailable`` rounds down, as in a Deployment.

    >>> resolve_int_or_percent("25%", 10, round_up=True), resolve_int_or_percent("25%", 10, round_up=False)
    (3, 2)
    >>> resolve_int_or_percent("2", 10, round_up=True)
    2
    """
    text = str(value).strip()
    if text.endswith("%"):
        percent = int(text[:-1])
        if percent < 0:
            raise ValueError(f"negative percentage {value!r}")
        exact = total * percent / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    count = int(text)
    if count < 0:
        raise ValueError(f"negative count {value!r}")
    return count


def surge_and_unavailable(max_surge: int | str, max_unavailable: int | str, desired: int) -> tuple[int, int]:
    """Resolved (surge, unavailable). Both zero would deadlock, so surge becomes 1.

    Kubernetes makes ``maxUnavailable`` 1 in that case; for WebSockets an extra
    Pod is cheaper than a missing one, so we surge instead.
    """
    surge = resolve_int_or_percent(max_surge, desired, round_up=True)
    unavailable = resolve_int_or_percent(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        surge = 1
    return surge, unavailable


def connection_floor(connections: int, capacity_per_pod: int) -> int:
    """Pods needed so ``connections`` fit at ``capacity_per_pod`` each.

    >>> connection_floor(2500, 1000), connection_floor(0, 1000)
    (3, 0)
    """
    if capacity_per_pod <= 0:
        raise ValueError("capacity_per_pod must be positive")
    return math.ceil(max(connections, 0) / capacity_per_pod)


@dataclasses.dataclass(frozen=True)
class ConnectionLoad:
    """Live connections on the stable Pods, and what one Pod should carry."""

    stable_connections: int
    capacity_per_pod: int


@dataclasses.dataclass(frozen=True)
class Current:
    """Replica counts as observed now; ``canary_available`` defaults to ``canary``."""

    stable: int
    canary: int
    canary_available: int | None = None

    @property
    def canary_ready(self) -> int:
        return self.canary if self.canary_available is None else self.canary_available


@dataclasses.dataclass(frozen=True)
class CanarySplit:
    """The next replica counts, the targets they move towards, and why stable is held."""

    stable: int
    canary: int
    target_stable: int
    target_canary: int
    held_for_connections: int

    @property
    def settled(self) -> bool:
        return (self.stable, self.canary) == (self.target_stable, self.target_canary)


def basic_canary_replicas(
    desired: int,
    weight: int,
    current: Current,
    *,
    max_surge: int | str = "25%",
    max_unavailable: int | str = "0",
    load: ConnectionLoad | None = None,
) -> CanarySplit:
    """One step of a replica-ratio canary from ``current`` towards ``weight``.

    Targets: ``canary = ceil(desired * weight / 100)`` (at least one Pod for any
    weight above 0), ``stable = desired - canary``. The step never lets the total
    exceed ``desired + maxSurge`` and never lets available Pods fall below
    ``desired - maxUnavailable`` (a canary Pod counts only once available).

    Unlike Argo Rollouts and Flagger, the stable set is never shrunk below what
    its live connections need (``load``): ``ceil(stable_connections /
    capacity_per_pod)`` Pods, capped at the stable Pods that exist. Pods held for
    that reason are reported in ``held_for_connections`` and are *not* charged to
    ``maxSurge`` — cutting sockets to save a Pod is the trade we refuse
    (fluxcd/flagger#1600, argoproj/argo-rollouts#3761).

    Worked examples (``desired`` 10):

    * weight 10, stable 10, canary 0, surge 1, unavailable 0
      → canary 1, stable 10 (the new canary Pod is not available yet).
    * weight 10, stable 10, canary 1 available 1, surge 1, unavailable 0
      → canary 1, stable 9.
    * weight 10, stable 10, canary 0, surge 1, unavailable 1
      → canary 1, stable 9 (Argo's ``CalculateReplicaCountsForBasicCanary`` example).
    * weight 50, stable 10, canary 0, surge 25 % (3), unavailable 0,
      7 000 connections on stable at 1 000 per Pod
      → target stable 5 but 7 are held: canary 5, stable 10 this step, then
      stable 7 once the canary is available; ``held_for_connections`` 2.
    * weight 0 (rollback), stable 9, canary 1, surge 1 → stable 10, canary 1
      (the canary keeps its sockets until stable can take them), then canary 0.
    """
    if desired < 0 or not 0 <= weight <= 100:
        raise ValueError(f"desired {desired} and weight {weight} must be >= 0 and within 0..100")
    surge, unavailable = surge_and_unavailable(max_surge, max_unavailable, desired)
    target_canary = min(desired, math.ceil(desired * weight / 100)) if weight else 0
    if weight and desired:
        target_canary = max(target_canary, 1)
    target_stable = desired - target_canary
    held = 0
    if load is not None:
        floor = min(current.stable, connection_floor(load.stable_connections, load.capacity_per_pod))
        held = max(0, floor - target_stable)
        target_stable += held

    max_total = desired + surge + held
    min_available = desired - unavailable

    # Grow whichever side needs it, within the surge; shrink only down to min_available.
    canary = current.canary
    stable = current.stable
    if target_canary > canary:
        canary = min(target_canary, max(canary, max_total - stable))
    if target_stable > stable:
        stable = min(target_stable, max(stable, max_total - canary))
    if target_stable < stable:
        canary_available = min(current.canary_ready, canary)
        stable = max(target_stable, min(stable, min_available - canary_available))
    if target_canary < canary:
        stable_available = min(stable, current.stable)
        canary = max(target_canary, min(canary, min_available - stable_available))
    return CanarySplit(stable, canary, target_stable, target_canary, held)


@dataclasses.dataclass(frozen=True)
class HpaRange:
    min_replicas: int
    max_replicas: int


@dataclasses.dataclass(frozen=True)
class RolloutHpa:
    """HPA bounds for the stable and canary Deployments while a canary runs."""

    stable: HpaRange
    canary: HpaRange | None


def rollout_hpa(
    min_replicas: int, max_replicas: int, weight: int, *, stable_connection_floor: int = 0
) -> RolloutHpa:
    """Split the cluster's HPA range between stable and canary by ``weight``.

    The canary gets ``ceil(range * weight / 100)`` (at least 1 while weight > 0,
    no HPA at weight 0); the stable HPA keeps the rest but its minimum never goes
    below ``stable_connection_floor``, so the HPA cannot shrink the stable set
    under its live sockets (argoproj/argo-rollouts#3849, fluxcd/flagger#1600).

    >>> split = rollout_hpa(2, 10, 20)
    >>> split.stable, split.canary
    (HpaRange(min_replicas=1, max_replicas=8), HpaRange(min_replicas=1, max_replicas=2))
    >>> rollout_hpa(2, 10, 20, stable_connection_floor=6).stable
    HpaRange(min_replicas=6, max_replicas=8)
    >>> rollout_hpa(2, 10, 0).canary is None
    True
    """
    if not 0 <= weight <= 100 or min_replicas < 0 or max_replicas < min_replicas:
        raise ValueError(f"bad HPA range {min_replicas}..{max_replicas} or weight {weight}")
    canary: HpaRange | None = None
    stable_min, stable_max = min_replicas, max_replicas
    if weight:
        canary_min = max(1, math.ceil(min_replicas * weight / 100))
        canary_max = max(canary_min, math.ceil(max_replicas * weight / 100))
        canary = HpaRange(canary_min, canary_max)
        stable_min = max(1, min_replicas - canary_min) if weight < 100 else 0
        stable_max = max(stable_min, max_replicas - canary_max)
    stable_min = max(stable_min, stable_connection_floor)
    stable_max = max(stable_max, stable_min)
    return RolloutHpa(HpaRange(stable_min, stable_max), canary)
