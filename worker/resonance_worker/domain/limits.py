"""Rate and count limits, with time passed in."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """A token bucket: ``burst`` tokens, refilled at ``rate`` per second."""

    rate: float
    burst: int
    tokens: float = field(init=False)
    updated: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; 0.0 on success, else the seconds until they would be there."""
        if self.rate <= 0:
            return 0.0  # unlimited
        if self.updated is not None and now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now if self.updated is None else max(self.updated, now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class LimitKind:
    """Names of limits, used as metric labels and in log lines."""

    CONNECTIONS_TOTAL = "connections_total"
    CONNECTIONS_PER_IP = "connections_per_ip"
    CONNECTIONS_PER_USER = "connections_per_user"
    MESSAGE_SIZE = "message_size"
    COMMAND_RATE = "command_rate"
    USER_RATE = "user_rate"
    CHANNELS = "channels"
    QUEUE = "queue"


@dataclass
class ConnectionCounter:
    """Open connections in total, per IP and per user, against their maxima (0: unlimited)."""

    max_total: int = 0
    max_per_ip: int = 0
    max_per_user: int = 0
    total: int = 0
    by_ip: Counter[str] = field(default_factory=Counter)
    by_user: Counter[str] = field(default_factory=Counter)

    def admit(self, ip: str) -> str | None:
        """Count a new connection from ``ip``; return the limit it would break instead."""
        if self.max_total and self.total >= self.max_total:
            return LimitKind.CONNECTIONS_TOTAL
        if self.max_per_ip and self.by_ip[ip] >= self.max_per_ip:
            return LimitKind.CONNECTIONS_PER_IP
        self.total += 1
        self.by_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.total -= 1
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]

    def admit_user(self, user: str) -> bool:
        """Count an authenticated connection of ``user`` (anonymous users are not limited)."""
        if user and self.max_per_user and self.by_user[user] >= self.max_per_user:
            return False
        if user:
            self.by_user[user] += 1
        return True

    def release_user(self, user: str) -> None:
        if not user:
            return
        self.by_user[user] -= 1
        if self.by_user[user] <= 0:
            del self.by_user[user]
