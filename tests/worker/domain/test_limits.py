"""Token bucket and connection counting, with time passed in."""

from __future__ import annotations

from resonance_worker.domain.limits import ConnectionCounter, LimitKind, TokenBucket


def test_token_bucket_bursts_then_refills() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == 0.5
    assert bucket.take(0.5) == 0.0
    assert bucket.take(10.0) == 0.0
    assert bucket.tokens == 2.0  # capped at burst, minus the one taken


def test_unlimited_bucket() -> None:
    assert TokenBucket(rate=0, burst=1).take(0.0) == 0.0


def test_connection_counter_limits_total_ip_and_user() -> None:
    counter = ConnectionCounter(max_total=3, max_per_ip=2, max_per_user=1)
    assert counter.admit("a") is None
    assert counter.admit("a") is None
    assert counter.admit("a") == LimitKind.CONNECTIONS_PER_IP
    assert counter.admit("b") is None
    assert counter.admit("c") == LimitKind.CONNECTIONS_TOTAL
    counter.release("a")
    counter.release("a")
    assert "a" not in counter.by_ip and counter.total == 1
    assert counter.admit_user("u")
    assert not counter.admit_user("u")
    assert counter.admit_user("") and counter.admit_user("")  # anonymous: not limited per user
    counter.release_user("u")
    counter.release_user("")
    assert counter.admit_user("u")
