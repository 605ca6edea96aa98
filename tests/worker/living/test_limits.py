"""The limits the node reads: configured, scaled by the thyroid's factor, restored exactly."""

from __future__ import annotations

import pytest
from resonance_worker.living.limits import AdaptiveLimits, FixedLimits, limits_from_settings, scaled
from resonance_worker.settings import LimitSettings, WorkerSettings


def settings() -> WorkerSettings:
    return WorkerSettings(
        node_name="n1",
        limits=LimitSettings(
            command_rate=50.0, command_burst=3, user_publish_rate=10.0, user_publish_burst=1
        ),
    )


def test_the_configured_limits_come_from_the_settings() -> None:
    limits = limits_from_settings(settings())
    assert (limits.session.command_rate, limits.session.command_burst, limits.session.node) == (50.0, 3, "n1")
    assert (limits.user_publish_rate, limits.user_publish_burst) == (10.0, 1)
    assert FixedLimits(limits).current() is limits


def test_scaling_tightens_rates_and_bursts_but_leaves_a_burst_of_one() -> None:
    base = limits_from_settings(settings())
    half = scaled(base, 0.5)
    assert half.session.command_rate == pytest.approx(25.0) and half.session.command_burst == 1
    assert half.user_publish_rate == pytest.approx(5.0) and half.user_publish_burst == 1
    assert half.session.ping_interval == base.session.ping_interval  # only the limits change
    assert scaled(base, 1.0) is base


def test_adaptive_limits_follow_the_factor_and_come_back_exactly() -> None:
    base = limits_from_settings(settings())
    limits = AdaptiveLimits(base)
    assert limits.current() is base and not limits.scale(1.0)
    assert limits.scale(0.25) and limits.current().session.command_rate == pytest.approx(12.5)
    assert not limits.scale(0.25)
    assert limits.scale(1.0) and limits.current() is base
