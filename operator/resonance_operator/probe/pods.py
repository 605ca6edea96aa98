"""Scrape and drain worker Pods at ``http://{podIP}:{containerPort}{path}`` (the I/O half of the probe)."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from resonance_operator.probe.prometheus import PrometheusProbe
from resonance_operator.probe.targets import DrainReport, DrainRequest, PodTarget

logger = logging.getLogger("resonance.operator.probe")


class PodProbe:
    """One per operator process; ``calls`` counts requests by kind and outcome."""

    def __init__(self, *, timeout: float = 2.0, max_concurrency: int = 16) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = asyncio.Semaphore(max_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self.calls: collections.Counter[str] = collections.Counter()
        self.prometheus = PrometheusProbe(timeout=max(timeout, 5.0))
        """PromQL for analyses with a Prometheus source (``rollout_pass.observe``)."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.prometheus.close()

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

    async def start_drains(
        self, orders: Sequence[tuple[PodTarget, DrainRequest]], api_key: str
    ) -> list[DrainReport | None]:
        """``POST /drain`` to each Pod in turn; each answer is that Pod's progress (``None``: no answer)."""
        return [await self.start_drain(target, api_key, request) for target, request in orders]

    async def drain_status(self, target: PodTarget, api_key: str) -> DrainReport | None:
        return await self._drain_call("GET", target, api_key, None)
