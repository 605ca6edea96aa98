"""The periodic position check (as Centrifugo's): a quiet channel does not hide a gap.

A positioned subscription notices a publication its node never received (the node's pub/sub
connection dropped while it was published) when the next publication arrives with the next
offset missing. A channel that goes quiet right after the gap would leave its subscribers
behind indefinitely. Every ``interval_s`` this task reads the stream top of each channel that
has positioned subscribers on this node (one ``history(limit=0)`` per channel) and asks
:class:`~resonance_worker.domain.positions.PositionWatch` about each subscription; one still
short of the top seen at the previous check gets insufficient state (unsubscribe 2500, or
disconnect 3010 for a server-side one), and the SDK resubscribes and recovers from history.

An engine failure skips the channel for this round: Redis being away is the readiness
probe's and the engine's business, and the check runs again when it is back.

When the engine's fan-out resumes after a break (the node's Redis pub/sub connection reconnected,
say after a Sentinel failover), whatever was published meanwhile never reached this node: the
check then runs at once and ``RESUMED_ROUNDS`` more times ``RESUMED_SETTLE_S`` apart (the two
looks still apply), so a subscriber of a channel that went quiet during the break recovers within
seconds rather than within two intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable

from aiohttp import web

from resonance_worker.domain.positions import PositionWatch
from resonance_worker.errors import EngineError
from resonance_worker.transport.background import run_in_background
from resonance_worker.transport.node import Node

log = logging.getLogger("resonance.worker.positions")

RESUMED_ROUNDS = 3
"""Rounds after the immediate one when fan-out resumed (one may find Redis still busy)."""
RESUMED_SETTLE_S = 1.0
"""Between those rounds: longer than a publication takes from the stream to a subscriber."""


class PositionChecker:
    """Checks the positioned subscriptions of one node against their streams."""

    def __init__(self, node: Node, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s must be positive")
        self.node = node
        self.interval_s = interval_s
        self.watch = PositionWatch()
        self.lost = 0
        """Subscriptions found behind for good, since start."""

    async def check_once(self) -> int:
        """One round over every channel; returns how many subscriptions were found lost."""
        node = self.node
        checked: list[Hashable] = []
        lost = 0
        for channel, subscribers in list(node.local_subs.items()):
            options = node.rules.options(channel)
            if options is None or not any(
                c.session.stream_position(channel) is not None for c in subscribers.values()
            ):
                continue
            try:
                _, top = await node.engine.history(
                    channel, limit=0, meta_ttl_seconds=options.history_meta_ttl_seconds
                )
            except EngineError as exc:
                log.debug("position check skipped", extra={"channel": channel, "error": str(exc)})
                # Keep the suspicions of this channel for the next round.
                checked.extend((c.client_id, channel) for c in subscribers.values())
                continue
            # Positions are read after the top: a publication delivered meanwhile only moves them on.
            for conn in list(subscribers.values()):
                position = conn.session.stream_position(channel)
                if position is None:
                    continue
                key = (conn.client_id, channel)
                checked.append(key)
                if self.watch.check(key, position, (top.offset, top.epoch)):
                    log.warning(
                        "subscription behind its stream: insufficient state",
                        extra={
                            "client": conn.client_id,
                            "channel": channel,
                            "offset": position[0],
                            "top_offset": top.offset,
                            "epoch_changed": position[1] != top.epoch,
                        },
                    )
                    conn.session.position_lost(channel)
                    conn.pump()
                    lost += 1
        self.watch.keep_only(checked)
        self.lost += lost
        return lost

    async def run(self) -> None:
        resumed = self.node.fanout_resumed
        quick = 0  # rounds left at RESUMED_SETTLE_S after fan-out resumed
        while True:
            wait_s = min(self.interval_s, RESUMED_SETTLE_S) if quick else self.interval_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await resumed.wait()
            if resumed.is_set():
                resumed.clear()
                quick = RESUMED_ROUNDS
            elif quick:
                quick -= 1
            try:
                await self.check_once()
            except Exception:
                # A bug here must not end the checks for the life of the process.
                log.exception("position check failed")


def install_position_check(app: web.Application, node: Node, interval_s: float) -> PositionChecker | None:
    """Run a :class:`PositionChecker` with the app (after the engine has started); an interval of
    0 turns it off (None)."""
    if interval_s <= 0:
        return None
    checker = PositionChecker(node, interval_s)
    run_in_background(app, "position-check", checker.run)
    return checker
