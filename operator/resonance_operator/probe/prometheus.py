"""PromQL instant queries against a Prometheus (the I/O half of the Prometheus analysis source).

A query's answer is one number: the first sample of a vector, or a scalar. An empty vector, a NaN (0/0,
no traffic) or an error is ``None``, never an exception: the analysis counts it as Inconclusive.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math

import aiohttp

from resonance_operator.rollout.analysis import AnalysisSpec, Reading
from resonance_operator.rollout.promql import queries

logger = logging.getLogger("resonance.operator.prometheus")


class PrometheusProbe:
    """One per operator process; ``calls`` counts queries by outcome."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self.calls: collections.Counter[str] = collections.Counter()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def value(self, address: str, query: str) -> float | None:
        """The number ``query`` gives now, or ``None`` (empty, NaN, unreachable, an error)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = address.rstrip("/") + "/api/v1/query"
        try:
            async with self._session.post(url, data={"query": query}) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            self.calls["unreachable"] += 1
            logger.info("prometheus %s: %r", address, exc)
            return None
        if body.get("status") != "success":
            self.calls["error"] += 1
            logger.warning("prometheus refused %s: %s", query, body.get("error"))
            return None
        self.calls["ok"] += 1
        data = body["data"]
        if data["resultType"] == "scalar":
            raw = data["result"][1]
        elif data["resultType"] == "vector" and data["result"]:
            raw = data["result"][0]["value"][1]
        else:
            return None
        number = float(raw)
        return None if math.isnan(number) or math.isinf(number) else number

    async def readings(
        self, spec: AnalysisSpec, *, namespace: str, cluster: str, revision: str
    ) -> tuple[Reading, ...]:
        """Each check of ``spec`` for one revision, in order."""
        assert spec.prometheus is not None
        source = spec.prometheus

        async def one(index: int) -> Reading:
            q = queries(
                spec.metrics[index],
                namespace=namespace,
                cluster=cluster,
                revision=revision,
                window=source.window,
            )
            value = await self.value(source.address, q.value)
            volume = 0.0 if q.volume is None else (await self.value(source.address, q.volume) or 0.0)
            if value is None and q.volume is not None and volume == 0.0:
                return Reading(None, 0.0)
            return Reading(value, volume)

        return tuple(await asyncio.gather(*(one(i) for i in range(len(spec.metrics)))))
