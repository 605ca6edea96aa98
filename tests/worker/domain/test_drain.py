"""The drain planner: budget shares, spreading, deadline and exit, with time and RNG passed in."""

from __future__ import annotations

import collections
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from resonance_worker.domain.drain import DrainPlan, DrainPolicy, may_exit, plan_drain, share_of_budget


def ids(count: int) -> list[str]:
    return [f"c{i}" for i in range(count)]


def policy(**overrides: float) -> DrainPolicy:
    values: dict[str, float] = {
        "reconnects_per_second": 4,
        "draining_pods": 2,
        "pod_index": 0,
        "window_seconds": 10,
        "remaining_threshold": 2,
        "deadline": 200.0,
    }
    values.update(overrides)
    return DrainPolicy(
        reconnects_per_second=int(values["reconnects_per_second"]),
        draining_pods=int(values["draining_pods"]),
        pod_index=int(values["pod_index"]),
        window_seconds=values["window_seconds"],
        remaining_threshold=int(values["remaining_threshold"]),
        deadline=values["deadline"],
    )


def per_second(plans: list[DrainPlan]) -> collections.Counter[int]:
    return collections.Counter(math.floor(d.at) for plan in plans for d in plan.disconnects)


def test_worked_example_from_the_docstring() -> None:
    plan = plan_drain(ids(10), policy(), now=100.0, seed=1)
    assert plan.share.per_slot == 2
    assert [(b.second, len(b.disconnects)) for b in plan.batches] == [(s, 1) for s in range(100, 110)]
    assert 107.0 <= plan.may_exit_at < 108.0
    assert plan.may_exit_at == plan.disconnects[7].at
    assert plan.left_at_exit == ()
    assert sorted(d.connection_id for d in plan.disconnects) == sorted(ids(10))


@pytest.mark.parametrize(
    ("budget", "pods", "index", "expected"),
    [
        (10, 3, 0, (4, 1, 0)),
        (10, 3, 1, (3, 1, 0)),
        (10, 3, 2, (3, 1, 0)),
        (6, 6, 5, (1, 1, 0)),
        (2, 5, 0, (1, 3, 0)),
        (2, 5, 4, (1, 3, 1)),
        (1, 4, 3, (1, 4, 3)),
    ],
)
def test_budget_shares(budget: int, pods: int, index: int, expected: tuple[int, int, int]) -> None:
    share = share_of_budget(budget, pods, index)
    assert (share.per_slot, share.every_seconds, share.phase) == expected


@pytest.mark.parametrize(("budget", "pods", "index"), [(0, 1, 0), (1, 0, 0), (3, 2, 2), (3, 2, -1)])
def test_bad_budget_is_refused(budget: int, pods: int, index: int) -> None:
    with pytest.raises(ValueError, match="budget"):
        share_of_budget(budget, pods, index)


@settings(max_examples=150, deadline=None)
@given(
    budget=st.integers(1, 40),
    pods=st.integers(1, 12),
    connections=st.lists(st.integers(0, 400), min_size=1, max_size=12),
    window=st.floats(0, 60),
    now=st.floats(0, 1000),
    length=st.floats(0.5, 120),
    seed=st.integers(0, 2**32),
)
# Found by hypothesis: a deadline 2e-16 s past a whole second put a close exactly on the deadline.
@example(
    budget=1, pods=1, connections=[1], window=0.0, now=0.5000000000000001, length=0.5000000000000001, seed=0
)
def test_the_cluster_budget_is_never_exceeded_in_any_second(
    budget: int, pods: int, connections: list[int], window: float, now: float, length: float, seed: int
) -> None:
    """All draining Pods' plans together: no second of the shared clock sees more than the budget."""
    plans = []
    for index in range(pods):
        count = connections[index % len(connections)]
        pod_policy = policy(
            reconnects_per_second=budget,
            draining_pods=pods,
            pod_index=index,
            window_seconds=window,
            remaining_threshold=0,
            deadline=now + length,
        )
        # Pods start draining up to a second apart, as they would in real life.
        start = now + (index % 3) * 0.37
        plan = plan_drain([f"p{index}-{i}" for i in range(count)], pod_policy, start, seed + index)
        plans.append(plan)
        # Deadline honoured, nothing before the Pod started draining, every socket accounted for once.
        assert all(start <= d.at < pod_policy.deadline for d in plan.disconnects)
        closed = [d.connection_id for d in plan.disconnects]
        assert len(closed) + len(plan.left_at_exit) == count
        assert set(closed).isdisjoint(plan.left_at_exit)
        assert plan.may_exit_at <= max(start, pod_policy.deadline)
        for batch in plan.batches:
            assert len(batch.disconnects) <= plan.share.per_slot
            assert plan.share.allows(batch.second)
            assert all(batch.second <= d.at < batch.second + 1 for d in batch.disconnects)
    assert max(per_second(plans).values(), default=0) <= budget


def test_closes_spread_over_the_window_when_the_budget_allows() -> None:
    plan = plan_drain(ids(30), policy(reconnects_per_second=100, draining_pods=1, window_seconds=10), 0.0, 7)
    assert len(plan.batches) == 10
    assert {len(b.disconnects) for b in plan.batches} == {3}


def test_the_budget_wins_over_the_window() -> None:
    plan = plan_drain(ids(30), policy(reconnects_per_second=2, draining_pods=1, window_seconds=5), 0.0, 7)
    assert len(plan.batches) == 15
    assert plan.batches[-1].second == 14


def test_what_does_not_fit_before_the_deadline_is_left_for_the_exit() -> None:
    plan = plan_drain(ids(20), policy(reconnects_per_second=2, draining_pods=2, deadline=5.5), 0.0, 3)
    assert len(plan.disconnects) == 6  # one per second in [0, 1) ... [5, 5.5)
    assert all(d.at < 5.5 for d in plan.disconnects)
    assert len(plan.left_at_exit) == 14
    assert plan.may_exit_at == 5.5


def test_few_connections_or_a_passed_deadline_exit_at_once() -> None:
    few = plan_drain(ids(2), policy(remaining_threshold=2), 50.0, 0)
    assert (few.batches, few.may_exit_at, sorted(few.left_at_exit)) == ((), 50.0, ids(2))
    late = plan_drain(ids(9), policy(deadline=40.0), 50.0, 0)
    assert (late.batches, late.may_exit_at, len(late.left_at_exit)) == ((), 50.0, 9)


def test_same_seed_same_plan_other_seed_other_jitter() -> None:
    first = plan_drain(ids(50), policy(), 10.25, 42)
    assert first == plan_drain(reversed(ids(50)), policy(), 10.25, 42)
    other = plan_drain(ids(50), policy(), 10.25, 43)
    assert [d.at for d in first.disconnects] != [d.at for d in other.disconnects]
    assert first.disconnects[0].at >= 11.0  # the first whole second after now


def test_due_returns_each_close_once_across_timer_ticks() -> None:
    plan = plan_drain(ids(12), policy(window_seconds=3), 0.0, 5)
    seen: list[str] = []
    for tick in range(0, 20):
        seen += plan.due(tick - 1.0 if tick else -math.inf, float(tick))
    assert sorted(seen) == sorted(ids(12))


def test_may_exit_by_threshold_or_deadline() -> None:
    rules = policy(remaining_threshold=3, deadline=100.0)
    assert may_exit(3, rules, 10.0)
    assert not may_exit(4, rules, 99.9)
    assert may_exit(400, rules, 100.0)
