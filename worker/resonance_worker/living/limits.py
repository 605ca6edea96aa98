"""The limits the node reads each time it needs one: fixed from the settings, or adapted by the thyroid.

The node asks its :class:`LimitsProvider` for :meth:`~LimitsProvider.current` limits when a
connection opens (its per-connection command rate and burst are fixed for its life) and at each
publish (the cluster-wide per-user publish rate). Nothing replaces the node's settings: with the
living core off the provider is :class:`FixedLimits`; with it on, the thyroid's
:class:`AdaptiveLimits`, which :func:`scaled` down by the thyroid's rate-limit factor while it
hurts and back exactly when it relaxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

from resonance_worker.domain.session import SessionConfig
from resonance_worker.settings import WorkerSettings


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits that can adapt, as of one moment."""

    session: SessionConfig
    """What a new connection's session gets (its command rate and burst among the rest)."""
    user_publish_rate: float
    """Publishes per second per user across the cluster (0: no limit)."""
    user_publish_burst: int


def limits_from_settings(settings: WorkerSettings) -> Limits:
    """The configured limits: what the node uses unless the thyroid tightens them."""
    limits = settings.limits
    session = SessionConfig(
        ping_interval=settings.ping_interval_seconds,
        pong_timeout=settings.pong_timeout_seconds,
        connect_timeout=settings.connect_timeout_seconds,
        expired_close_delay=settings.expired_close_delay_seconds,
        max_channels=limits.max_channels,
        command_rate=limits.command_rate,
        command_burst=limits.command_burst,
        max_rate_violations=limits.max_rate_violations,
        queue_max_bytes=limits.queue_max_bytes,
        history_max_limit=limits.history_max_limit,
        presence_ttl=settings.presence_ttl_seconds,
        presence_update_interval=settings.presence_update_seconds,
        allow_anonymous=settings.allow_anonymous,
        personal_channel=settings.personal_channel,
        tenant_isolation=settings.tenant_isolation,
        version="resonance-worker",
        node=settings.worker_name,
    )
    return Limits(session, limits.user_publish_rate, limits.user_publish_burst)


def scaled(base: Limits, factor: float) -> Limits:
    """``base`` with its rates and bursts times ``factor`` (bursts rounded down, at least 1)."""
    if factor == 1.0:
        return base
    session = replace(
        base.session,
        command_rate=base.session.command_rate * factor,
        command_burst=max(1, math.floor(base.session.command_burst * factor)),
    )
    return Limits(
        session,
        user_publish_rate=base.user_publish_rate * factor,
        user_publish_burst=max(1, math.floor(base.user_publish_burst * factor)),
    )


class LimitsProvider(Protocol):
    """Where the node reads its limits."""

    def current(self) -> Limits: ...


class FixedLimits:
    """The configured limits, always."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits

    def current(self) -> Limits:
        return self._limits


class AdaptiveLimits:
    """The configured limits scaled by a factor the thyroid sets (1: as configured)."""

    def __init__(self, base: Limits) -> None:
        self.base = base
        self.factor = 1.0
        self._current = base

    def current(self) -> Limits:
        return self._current

    def scale(self, factor: float) -> bool:
        """Scale the configured limits by ``factor`` from now on; False when it was already so."""
        if factor == self.factor:
            return False
        self.factor = factor
        self._current = scaled(self.base, factor)
        return True
