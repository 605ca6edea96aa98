"""Drain: hand this worker's clients over within the cluster's reconnect budget.

The I/O shell of ``resonance_worker.domain.drain`` (read its docstring for the
budget shares, the spreading and when a Pod may leave). A ``Drainer`` takes
the node's open connections, asks the planner for a schedule, and closes each
connection at its time with code 3001 "shutdown": the SDKs reconnect (through
the Service, to another Pod) and resume their subscriptions through recovery.
From the start the node is draining: ``/ready`` answers 503 and new WebSocket
connections are refused, so the clients land elsewhere.

Timers fire late on a busy event loop, so a close is not simply done at its
planned time: ``BudgetGuard`` counts the closes of every second of the shared
clock and defers one that would go over this Pod's share (or fall in a second
that belongs to another Pod) to the next second the share allows. However late
the loop, no second sees more closes from this Pod than its share.

HTTP (``Authorization: apikey <key>``, the server API's key and check of
``transport.http``; 403 when no key is configured, 401 for a wrong one):

* ``POST /drain`` with ``{"budget_per_second": R, "pods": n, "pod_index": j,
  "window_seconds": W, "remaining_threshold": T, "deadline_seconds": D,
  "seed": s}`` starts a drain: 202 with the state below. While a drain runs, a
  second POST changes nothing and answers 200 with the current state. Bad input
  is 400 with ``{"error": {"code": 107, "message": ...}}``.
* ``GET /drain``: ``{"draining", "open_connections", "closed", "may_leave", ...}``;
  while draining also ``planned``, ``may_leave_at`` (when the plan expects the
  threshold to be reached), ``deadline_at``, the request and ``closes_per_second``.

SIGTERM (``resonance_worker.__main__``) uses the same drainer: it starts a drain
of its own from the ``shutdown_drain_*`` settings unless one is running, waits
until the worker may leave, then closes what remains and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from resonance_worker.domain.codes import Disconnects, ErrorCode
from resonance_worker.domain.drain import DrainPlan, DrainPolicy, DrainShare, may_exit, plan_drain
from resonance_worker.transport import audit
from resonance_worker.transport.http import (
    ApiError,
    check_api_key,
    json_response,
    read_json_object,
    response_for,
)
from resonance_worker.transport.node import Node

log = logging.getLogger("resonance.worker.drain")

DRAIN_DISCONNECT = Disconnects.SHUTDOWN
"""3001: reconnect allowed, so the SDK comes back (elsewhere) and recovers."""

SETTLE_SECONDS = 3.0
"""After the last closes, how long leaving waits for their sockets to finish
(a client that stops reading is aborted after ``ws.ABORT_AFTER_SECONDS``)."""


class DrainRequest(BaseModel):
    """What the operator (or SIGTERM) asks of one draining Pod."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    budget_per_second: int = Field(ge=1, le=1_000_000, description="Reconnects per second, whole cluster.")
    pods: int = Field(1, ge=1, le=100_000, description="How many Pods drain at once and share the budget.")
    pod_index: int = Field(0, ge=0, description="This Pod's index among them, 0..pods-1.")
    window_seconds: float = Field(0.0, ge=0, le=86_400, description="Spread the closes over at least this.")
    remaining_threshold: int = Field(0, ge=0, description="The Pod may leave at this many open or fewer.")
    deadline_seconds: float = Field(gt=0, le=86_400, description="From now: leave whatever remains.")
    seed: int = Field(0, description="Seeds the order and the jitter of the closes.")

    @model_validator(mode="after")
    def _index_in_range(self) -> DrainRequest:
        if self.pod_index >= self.pods:
            raise ValueError(f"pod_index must be below pods ({self.pod_index} >= {self.pods})")
        return self

    def policy(self, now: float) -> DrainPolicy:
        return DrainPolicy(
            reconnects_per_second=self.budget_per_second,
            draining_pods=self.pods,
            pod_index=self.pod_index,
            window_seconds=self.window_seconds,
            remaining_threshold=self.remaining_threshold,
            deadline=now + self.deadline_seconds,
        )


def describe_errors(exc: ValidationError) -> str:
    """One line a person can act on: ``field: problem; field: problem``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class BudgetGuard:
    """Counts this Pod's closes per second of the shared clock and keeps each second within its share."""

    def __init__(self, share: DrainShare) -> None:
        self.share = share
        self.used: dict[int, int] = {}

    def admit(self, now: float) -> float | None:
        """None when a close may go at ``now`` (it is counted); else when to try again."""
        second = math.floor(now)
        if self.share.allows(second) and self.used.get(second, 0) < self.share.per_slot:
            self.used[second] = self.used.get(second, 0) + 1
            return None
        following = second + 1
        while not self.share.allows(following):
            following += 1
        return float(following)


class Drainer:
    """One worker's drain: at most one per process, started by ``POST /drain`` or SIGTERM."""

    def __init__(self, node: Node) -> None:
        self.node = node
        registry = node.metrics.registry
        self.closes_metric = Counter(
            "resonance_drain_closes",
            "Connections closed by a drain (code 3001: the client reconnects elsewhere).",
            registry=registry,
        )
        self.draining_metric = Gauge("resonance_draining", "1 while this worker drains.", registry=registry)
        self.request: DrainRequest | None = None
        self.policy: DrainPolicy | None = None
        self.plan: DrainPlan | None = None
        self.guard: BudgetGuard | None = None
        self.started_at = 0.0
        self.closed = 0
        self.cut_at_exit = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        return self.plan is not None

    def start(self, request: DrainRequest, now: float) -> bool:
        """Plan and start the drain; False (and nothing changes) when one already runs."""
        if self.draining:
            return False
        self.node.draining = True
        self.draining_metric.set(1)
        self.request = request
        self.policy = request.policy(now)
        self.plan = plan_drain(self.node.connections, self.policy, now, request.seed)
        self.guard = BudgetGuard(self.plan.share)
        self.started_at = now
        log.info(
            "drain started",
            extra={
                "connections": len(self.node.connections),
                "planned": len(self.plan.disconnects),
                "budget_per_second": request.budget_per_second,
                "pods": request.pods,
                "pod_index": request.pod_index,
                "share_per_slot": self.plan.share.per_slot,
                "share_every_seconds": self.plan.share.every_seconds,
                "may_leave_at": self.plan.may_exit_at,
                "deadline_at": self.policy.deadline,
            },
        )
        self._task = asyncio.create_task(self._run())
        return True

    async def _run(self) -> None:
        assert self.plan is not None
        planned = {d.connection_id for d in self.plan.disconnects}
        in_time = True
        for disconnect in self.plan.disconnects:
            in_time = in_time and await self._close_when_due(disconnect.connection_id, disconnect.at)
        # A connection whose handshake was under way when the drain began is in no plan.
        for client_id in [c for c in self.node.connections if c not in planned]:
            in_time = in_time and await self._close_when_due(client_id, time.time())
        log.info(
            "drain plan done" if in_time else "drain deadline reached",
            extra={
                "closed": self.closed,
                "open": len(self.node.connections),
                "closes_per_second": self.closes_per_second(),
            },
        )

    async def _close_when_due(self, client_id: str, at: float) -> bool:
        """Close one connection at ``at`` or later, within the share; False once the deadline passed."""
        assert self.policy is not None
        assert self.guard is not None
        while True:
            now = time.time()
            if now >= self.policy.deadline:
                return False
            if now < at:
                await asyncio.sleep(min(at, self.policy.deadline) - now)
                continue
            conn = self.node.connections.get(client_id)
            if conn is None or conn.session.closed:
                return True  # it left on its own: no budget spent
            retry = self.guard.admit(now)
            if retry is None:
                conn.disconnect(DRAIN_DISCONNECT)
                self.closed += 1
                self.closes_metric.inc()
                return True
            at = retry

    def may_leave(self, now: float) -> bool:
        return self.policy is not None and may_exit(len(self.node.connections), self.policy, now)

    def status(self, now: float) -> dict[str, Any]:
        """The state ``GET /drain`` reports."""
        state: dict[str, Any] = {
            "draining": self.draining,
            "open_connections": len(self.node.connections),
            "closed": self.closed,
            "may_leave": self.may_leave(now),
        }
        if self.plan is None or self.policy is None or self.request is None or self.guard is None:
            return state
        return {
            **state,
            "planned": len(self.plan.disconnects),
            "cut_at_exit": self.cut_at_exit,
            "started_at": self.started_at,
            "may_leave_at": self.plan.may_exit_at,
            "deadline_at": self.policy.deadline,
            "request": self.request.model_dump(),
            "share": {"per_second": self.plan.share.per_slot, "every_seconds": self.plan.share.every_seconds},
            "closes_per_second": self.closes_per_second(),
        }

    def closes_per_second(self) -> dict[str, int]:
        """Closes in each second of the shared clock (unix seconds as strings, for JSON)."""
        used = self.guard.used if self.guard is not None else {}
        return {str(second): n for second, n in sorted(used.items())}

    async def leave(self, poll_seconds: float = 0.05) -> None:
        """Wait until this worker may go, then close what remains (the exit would
        cut it anyway, without a close frame) and give the sockets a moment to finish."""
        # Polled: the count falls as clients leave and the deadline comes by the clock alone.
        while not self.may_leave(time.time()):  # noqa: ASYNC110
            await asyncio.sleep(poll_seconds)
        await self.close_remaining()

    async def close_remaining(self) -> None:
        """Close every connection still open now (code 3001) and wait, bounded, for them to finish."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        remaining = [c for c in self.node.connections.values() if not c.session.closed]
        for conn in remaining:
            conn.disconnect(DRAIN_DISCONNECT)
        self.cut_at_exit += len(remaining)
        self.closes_metric.inc(len(remaining))
        if remaining:
            log.info("drain: closing the rest before exit", extra={"connections": len(remaining)})
        loop = asyncio.get_running_loop()
        until = loop.time() + SETTLE_SECONDS
        while self.node.connections and loop.time() < until:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop the drain's timer task (on application cleanup)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def post_drain(drainer: Drainer, request: web.Request) -> web.Response:
    """``POST /drain``: start draining (202), or report the drain already running (200). Audited."""
    response, body = await _post_drain(drainer, request)
    audit.record(request, "admin.drain", response.status)
    if response.status == 202:
        log.info("drain requested", extra={"remote": request.remote or "", "request": body})
    return response


async def _post_drain(drainer: Drainer, request: web.Request) -> tuple[web.Response, Any]:
    body: dict[str, Any] | None = None
    try:
        check_api_key(request, drainer.node.settings.api_key)
        body = await read_json_object(request)
        try:
            drain_request = DrainRequest.model_validate(body)
        except ValidationError as exc:
            raise ApiError(ErrorCode.BAD_REQUEST, describe_errors(exc)) from None
    except ApiError as exc:
        return response_for(exc), body
    now = time.time()
    started = drainer.start(drain_request, now)
    return json_response(drainer.status(now), 202 if started else 200), body


async def get_drain(drainer: Drainer, request: web.Request) -> web.Response:
    """``GET /drain``: the drain's state (not draining until asked)."""
    try:
        check_api_key(request, drainer.node.settings.api_key)
    except ApiError as exc:
        return response_for(exc)
    return json_response(drainer.status(time.time()))


def install_drain(app: web.Application, drainer: Drainer) -> None:
    """Serve ``POST /drain`` and ``GET /drain`` with ``drainer``, and stop its task at cleanup."""

    async def post(request: web.Request) -> web.Response:
        return await post_drain(drainer, request)

    async def get(request: web.Request) -> web.Response:
        return await get_drain(drainer, request)

    async def stop_on_cleanup(app: web.Application) -> None:
        await drainer.close()

    app.on_cleanup.append(stop_on_cleanup)
    app.router.add_post("/drain", post)
    app.router.add_get("/drain", get)
