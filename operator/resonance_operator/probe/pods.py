"""Scrape and drain worker Pods at ``http://{podIP}:{containerPort}{path}``."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

logger = logging.getLogger("resonance.operator.probe")


@dataclasses.dataclass(frozen=True)
class PodTarget:
    """One running worker Pod the operator can reach."""

    name: str
    revision: str
    ip: str
    port: int

    def url(self, path: str) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{self.port}{path}"


@dataclasses.dataclass(frozen=True)
class DrainReport:
    """A worker's answer about its drain (``POST``/``GET /drain``)."""

    draining: bool
    open_connections: int
    may_leave: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DrainReport:
        return cls(
            draining=bool(data.get("draining", False)),
            open_connections=int(data.get("open_connections", 0)),
            may_leave=bool(data.get("may_leave", False)),
        )


@dataclasses.dataclass(frozen=True)
class DrainRequest:
    """The body of ``POST /drain`` for one Pod (see ``docs/rollouts.md``, Drain)."""

    budget_per_second: int
    pods: int
    pod_index: int
    window_seconds: int
    remaining_threshold: int
    deadline_seconds: float
    seed: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PodProbe:
    """One per operator process; ``calls`` counts requests by kind and outcome."""

    def __init__(self, *, timeout: float = 2.0, max_concurrency: int = 16) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = asyncio.Semaphore(max_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self.calls: collections.Counter[str] = collections.Counter()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        kind: str,
        method: str,
        target: PodTarget,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> tuple[int, str] | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with (
                self._limit,
                self._session.request(
                    method,
                    target.url(path),
                    headers=dict(headers or {}),
                    data=None if body is None else json.dumps(body),
                ) as response,
            ):
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.calls[f"{kind}:unreachable"] += 1
            logger.info("%s of pod %s (%s) failed: %r", kind, target.name, target.ip, exc)
            return None
        self.calls[f"{kind}:{response.status}"] += 1
        return response.status, text

    async def scrape(self, target: PodTarget, path: str) -> str | None:
        """The Pod's metrics text, or ``None`` when it did not answer 200."""
        answer = await self._request("scrape", "GET", target, path)
        if answer is None or answer[0] != 200:
            return None
        return answer[1]

    async def scrape_all(self, targets: Sequence[PodTarget], path: str) -> list[tuple[PodTarget, str]]:
        texts = await asyncio.gather(*(self.scrape(target, path) for target in targets))
        return [(target, text) for target, text in zip(targets, texts, strict=True) if text is not None]

    async def _drain_call(
        self, method: str, target: PodTarget, api_key: str, request: DrainRequest | None
    ) -> DrainReport | None:
        headers = {"Authorization": f"apikey {api_key}", "Content-Type": "application/json"}
        body = None if request is None else request.to_json()
        answer = await self._request(
            f"drain_{method.lower()}", method, target, "/drain", headers=headers, body=body
        )
        if answer is None:
            return None
        status, text = answer
        if status not in (200, 202):
            logger.warning("%s /drain of pod %s: %s %s", method, target.name, status, text[:200])
            return None
        try:
            data = json.loads(text)
        except ValueError:
            logger.warning("%s /drain of pod %s: not JSON: %s", method, target.name, text[:200])
            return None
        return DrainReport.from_json(data) if isinstance(data, dict) else None

    async def start_drain(self, target: PodTarget, api_key: str, request: DrainRequest) -> DrainReport | None:
        """Ask the Pod to drain (idempotent: a draining Pod answers with its current state)."""
        return await self._drain_call("POST", target, api_key, request)

    async def drain_status(self, target: PodTarget, api_key: str) -> DrainReport | None:
        return await self._drain_call("GET", target, api_key, None)


def pod_targets(pods: Sequence[Mapping[str, Any]], revision_label: str, port_name: str) -> list[PodTarget]:
    """Running, not terminating Pods with an IP, as targets (the port named ``port_name``)."""
    targets = []
    for pod in pods:
        metadata = pod.get("metadata", {})
        status = pod.get("status", {})
        revision = (metadata.get("labels") or {}).get(revision_label)
        ip = status.get("podIP")
        if metadata.get("deletionTimestamp") or status.get("phase") != "Running" or not ip or not revision:
            continue
        port = next(
            (
                int(p["containerPort"])
                for c in pod.get("spec", {}).get("containers", [])
                for p in c.get("ports", [])
                if p.get("name") == port_name
            ),
            None,
        )
        if port is None:
            continue
        targets.append(PodTarget(str(metadata["name"]), str(revision), str(ip), port))
    return sorted(targets, key=lambda t: t.name)
