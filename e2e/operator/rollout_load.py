"""Client load for the rollout e2e: raw Centrifuge-protocol (v2 JSON) WebSocket clients
that reach worker Pods the way a Service routes them.

Each client picks a Pod the Service selects *now* (its selector read from the API
server, matched against the Pods' labels), connects with a real token, answers the
server's pings, and sends ``ping`` commands at a steady rate. It leaves after a few
seconds (clients churn; without new connections a weight would steer nothing), and
when its socket closes - on its own or because a drain hands it over with 3001 - it
reconnects, after a short jitter, to a Pod the Service selects then - so a promotion
or rollback moves it as it would move an SDK behind a Service. Replies are counted
by Pod, so a test can see errors.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import threading
import time
from typing import Any

import aiohttp
import orjson

from e2e.kube import kubectl, kubectl_json

WS_PATH = "/connection/websocket"


class ServiceLoad:
    """``clients`` connections per Service name, in a background thread with its own event loop."""

    def __init__(
        self,
        namespace: str,
        services: dict[str, int],
        token: str,
        *,
        commands_per_second: float = 4.0,
        refresh_seconds: float = 1.0,
        session_seconds: tuple[float, float] = (2.0, 6.0),
    ) -> None:
        self.namespace = namespace
        self.services = dict(services)
        self.token = token
        self.interval = 1.0 / commands_per_second
        self.refresh_seconds = refresh_seconds
        # Clients come and go (mobile apps do): without new connections a weight steers nothing.
        self.session_seconds = session_seconds
        self.targets: dict[str, list[tuple[str, str, int]]] = {name: [] for name in services}
        self.replies: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.connects: collections.Counter[str] = collections.Counter()
        self.closes: collections.Counter[int] = collections.Counter()
        self.connect_failures: collections.Counter[str] = collections.Counter()
        """Refused or unanswered upgrades: a Pod whose process is not up yet, or one draining (503)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollout-load", daemon=True)
        self._error: BaseException | None = None

    # -- the Service's view, refreshed from the API server --------------------------------------
    def _refresh(self) -> None:
        pods = kubectl_json("get", "pods", "-n", self.namespace)["items"]
        for name in self.services:
            text = kubectl("get", "service", name, "-n", self.namespace, "--ignore-not-found", "-o", "json")
            service = json.loads(text) if text.strip() else {}
            selector = service.get("spec", {}).get("selector") or {}
            found = []
            for pod in pods:
                labels = pod["metadata"].get("labels") or {}
                ip = pod.get("status", {}).get("podIP")
                running = pod.get("status", {}).get("phase") == "Running"
                if not selector or not ip or not running or pod["metadata"].get("deletionTimestamp"):
                    continue
                if all(labels.get(k) == v for k, v in selector.items()):
                    port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
                    found.append((pod["metadata"]["name"], ip, int(port)))
            self.targets[name] = found

    def _refresher(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a slow API server only delays the next view
                self._refresh()
            self._stop.wait(self.refresh_seconds)

    # -- clients -----------------------------------------------------------------------------------
    async def _client(self, session: aiohttp.ClientSession, service: str) -> None:
        command_id = 0
        while not self._stop.is_set():
            targets = self.targets.get(service) or []
            if not targets:
                await asyncio.sleep(0.2)
                continue
            pod, ip, port = random.choice(targets)
            try:
                async with session.ws_connect(f"ws://{ip}:{port}{WS_PATH}", heartbeat=None) as ws:
                    command_id += 1
                    await ws.send_str(
                        orjson.dumps({"id": command_id, "connect": {"token": self.token}}).decode()
                    )
                    self.connects[pod] += 1
                    sender = asyncio.create_task(self._pings(ws, command_id))
                    try:
                        await self._read(ws, pod, random.uniform(*self.session_seconds))
                    finally:
                        sender.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await sender
                    self.closes[ws.close_code or 0] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                status = getattr(exc, "status", None)
                self.connect_failures[f"{type(exc).__name__}{'' if status is None else f' {status}'}"] += 1
            await asyncio.sleep(random.uniform(0.1, 0.5))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, pod: str, session: float) -> None:
        """Count replies and answer pings until the server closes, or leave after ``session`` seconds."""
        loop = asyncio.get_running_loop()
        leave_at = loop.time() + session
        while True:
            try:
                message = await ws.receive(timeout=max(0.001, leave_at - loop.time()))
            except TimeoutError:
                await ws.close()
                return
            if message.type is not aiohttp.WSMsgType.TEXT:
                return
            for line in message.data.splitlines():
                frame = orjson.loads(line) if line.strip() else {}
                if not frame:
                    await ws.send_str("{}")  # pong
                elif "error" in frame:
                    self.errors[pod] += 1
                elif "id" in frame:
                    self.replies[pod] += 1

    async def _pings(self, ws: aiohttp.ClientWebSocketResponse, first_id: int) -> None:
        command_id = first_id * 100_000
        await asyncio.sleep(random.uniform(0, self.interval))
        while not ws.closed:
            command_id += 1
            await ws.send_str(orjson.dumps({"id": command_id, "ping": {}}).decode())
            await asyncio.sleep(self.interval)

    async def _main(self) -> None:
        async with aiohttp.ClientSession() as session:
            tasks = [
                asyncio.create_task(self._client(session, service))
                for service, count in self.services.items()
                for _ in range(count)
            ]
            await asyncio.to_thread(self._stop.wait)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def start(self) -> ServiceLoad:
        self._refresh()
        threading.Thread(target=self._refresher, name="rollout-load-refresh", daemon=True).start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self._error is not None:
            raise self._error

    def error_share(self, pods: list[str]) -> float:
        errors = sum(self.errors[p] for p in pods)
        total = errors + sum(self.replies[p] for p in pods)
        return errors / total if total else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "connects": sum(self.connects.values()),
            "replies": sum(self.replies.values()),
            "errors": sum(self.errors.values()),
            "connect_failures": dict(self.connect_failures),
            "closes_by_code": dict(self.closes),
            "at": time.time(),
        }
