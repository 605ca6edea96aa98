"""The periodic position check: is a positioned subscription behind its stream for real?

A positioned subscription notices a gap (a publication its node never received, say while the
node's pub/sub connection was down) only when the next publication arrives. On a channel that
goes quiet right after the gap, that may be never. So the shell periodically reads each
channel's stream top and asks :class:`PositionWatch` about every positioned subscription.

One look is not enough: a publication is stored (moving the top) before it is fanned out, so a
subscriber can be one look behind while the publication is still on its way. A subscription is
therefore declared lost only when, at a check, it has not reached the top seen at the *previous*
check — something in flight for a whole check interval is not coming. Then the session treats it
as any gap: insufficient state, and the client resubscribes and recovers from history.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

Position = tuple[int, str]
"""(offset, epoch) in a channel's stream."""


def reached(position: Position, top: Position) -> bool:
    """Whether a subscription at ``position`` holds everything up to ``top``."""
    offset, epoch = position
    top_offset, top_epoch = top
    return epoch == top_epoch and offset >= top_offset


@dataclass
class PositionWatch:
    """The top each subscription was found short of at the last check, keyed by the caller
    (for instance ``(client id, channel)``)."""

    _short_of: dict[Hashable, Position] = field(default_factory=dict)

    def check(self, key: Hashable, position: Position, top: Position) -> bool:
        """Compare one subscription with its stream's top; True when it is lost (behind since the
        previous check). A lost subscription is forgotten: it resubscribes under a new check."""
        if reached(position, top):
            self._short_of.pop(key, None)
            return False
        earlier = self._short_of.get(key)
        if earlier is not None and not reached(position, earlier):
            del self._short_of[key]
            return True
        self._short_of[key] = top
        return False

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget subscriptions that are gone (the ones not checked in this round)."""
        live = set(keys)
        for key in [k for k in self._short_of if k not in live]:
            del self._short_of[key]

    def __len__(self) -> int:
        return len(self._short_of)
