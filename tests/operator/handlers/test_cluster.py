"""The retry schedule of failed reconciles (pure); the handlers themselves run in e2e/operator."""

from __future__ import annotations

import pytest
from resonance_operator.handlers.cluster import RETRY_MAX_SECONDS, retry_delay


@pytest.mark.parametrize(
    ("retry", "lowest", "highest"),
    [(0, 2.5, 5.0), (1, 5.0, 10.0), (2, 10.0, 20.0), (3, 20.0, 40.0), (4, 30.0, 60.0), (50, 30.0, 60.0)],
)
def test_retries_double_up_to_a_minute_with_jitter(retry: int, lowest: float, highest: float) -> None:
    assert retry_delay(retry, 0.0) == pytest.approx(lowest)
    assert retry_delay(retry, 0.999999) == pytest.approx(highest, rel=1e-5)


def test_jitter_spreads_clusters_that_failed_together() -> None:
    delays = {round(retry_delay(2, u / 10), 3) for u in range(10)}
    assert len(delays) == 10
    assert max(delays) <= RETRY_MAX_SECONDS


def test_a_negative_retry_count_is_the_first_retry() -> None:
    assert retry_delay(-3, 0.5) == retry_delay(0, 0.5)
