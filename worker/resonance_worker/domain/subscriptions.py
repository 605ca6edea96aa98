"""One connection's subscriptions: their state, and the rules that turn a subscribe into a
subscription - recovery, positioning and the publications buffered meanwhile (sans-I/O).

A subscription is ``SUBSCRIBING`` from the subscribe command until the engine answered: the
publications fanned out meanwhile are buffered with their positions. ``settle`` then decides
the ``SubscribeResult`` (recovered or not, from which position) and merges the buffer behind
it without duplicates or gaps, or refuses: 112 when the client asked for it and recovery
failed, a gap closing the connection with 3010 (the SDK reconnects and recovers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from resonance_worker.domain.channels import NamespaceOptions
from resonance_worker.domain.codes import Disconnects, ErrorCode
from resonance_worker.domain.operations import Failed, PeerInfo, StreamState, SubscribeOp
from resonance_worker.domain.results import PublicationLike, SubscribeResult


class SubState(enum.Enum):
    SUBSCRIBING = "subscribing"
    SUBSCRIBED = "subscribed"


class RecoveryObserver(Protocol):
    def recovery(self, outcome: str) -> None: ...


@dataclass(slots=True)
class Subscription:
    channel: str
    options: NamespaceOptions
    info: PeerInfo
    server_side: bool
    positioned: bool
    push_join_leave: bool
    expire_at: int | None
    state: SubState = SubState.SUBSCRIBING
    offset: int = 0
    epoch: str = ""
    buffer: list[tuple[int, str, bytes]] = field(default_factory=list)
    """Publications that arrived while subscribing: (offset, epoch, frame)."""


def stream_recovered(stream: StreamState, offset: int, epoch: str) -> bool:
    """Centrifuge's rule: same epoch, and the publications continue exactly from
    ``offset`` up to the top (or there are none and nothing was missed)."""
    if epoch and epoch != stream.epoch:
        return False
    pubs = stream.publications
    if not pubs:
        return stream.offset == offset
    return pubs[0].offset == offset + 1 and pubs[-1].offset == stream.offset


def settle(
    sub: Subscription, op: SubscribeOp, stream: StreamState, now: float, observer: RecoveryObserver
) -> SubscribeResult | Failed:
    """The ``SubscribeResult`` of ``op`` once the engine answered with ``stream``, with
    recovery merged with what was buffered meanwhile; or why it fails instead. On success
    ``sub`` is ``SUBSCRIBED`` at its position and holds in ``buffer`` only the publications
    still to send after the reply; on failure the caller forgets ``sub``."""
    ttl = max(0, int(op.expire_at - now)) if op.expire_at is not None else None
    if not (op.positioned or op.recoverable):
        sub.state = SubState.SUBSCRIBED
        return SubscribeResult(ttl=ttl)
    start = stream.offset
    recovered = False
    recovered_pubs: list[PublicationLike] = []
    if op.since is not None:
        offset, epoch = op.since
        recovered = stream_recovered(stream, offset, epoch)
        observer.recovery("recovered" if recovered else "not_recovered")
        if recovered:
            recovered_pubs = list(stream.publications)
            start = offset + len(recovered_pubs)
        elif op.reject_unrecovered:
            return Failed(ErrorCode.UNRECOVERABLE_POSITION)
    # Publications buffered while subscribing: those at or before `start`
    # are already in the reply (or before the client's position); the rest
    # must continue the stream without a gap.
    expected = start
    pending: list[tuple[int, str, bytes]] = []
    for offset, epoch, frame in sub.buffer:
        if epoch != stream.epoch and stream.epoch:
            observer.recovery("insufficient_state")
            return Failed(Disconnects.INSUFFICIENT_STATE)
        if offset <= expected:
            continue
        if offset != expected + 1:
            observer.recovery("insufficient_state")
            return Failed(Disconnects.INSUFFICIENT_STATE)
        expected = offset
        pending.append((offset, epoch, frame))
    sub.buffer = pending
    sub.offset = expected
    sub.epoch = stream.epoch
    sub.state = SubState.SUBSCRIBED
    return SubscribeResult(
        ttl=ttl,
        positioned=True,
        recoverable=op.recoverable,
        was_recovering=op.since is not None,
        recovered=recovered,
        epoch=stream.epoch,
        # As Centrifuge: a recovered reply carries the client's own offset and
        # the SDK advances it with each recovered publication.
        offset=op.since[0] if recovered and op.since else start,
        publications=recovered_pubs,
    )
