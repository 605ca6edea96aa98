"""Stand-ins for the API client and the Pod probe, recording what the rollout pass asked of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.probe.targets import DrainReport, DrainRequest, PodTarget


class Kube:
    def __init__(self, pods: Sequence[Mapping[str, Any]] = ()) -> None:
        self.pods = list(pods)
        self.listed: list[tuple[str, str]] = []
        self.patched: list[tuple[str, Mapping[str, Any]]] = []

    async def list(self, path: str, label_selector: str) -> list[Mapping[str, Any]]:
        self.listed.append((path, label_selector))
        return self.pods

    async def patch(self, path: str, body: Mapping[str, Any]) -> None:
        self.patched.append((path, body))


class Probe:
    def __init__(self, metrics: Mapping[str, str] | None = None, may_leave: bool = True) -> None:
        self.metrics = dict(metrics or {})
        self.may_leave = may_leave
        self.scraped: list[tuple[str, str]] = []
        self.drained: list[tuple[str, DrainRequest, str]] = []

    async def scrape_all(self, targets: Sequence[PodTarget], path: str) -> list[tuple[PodTarget, str]]:
        self.scraped += [(t.name, path) for t in targets]
        return [(t, self.metrics[t.name]) for t in targets if t.name in self.metrics]

    async def start_drains(
        self, orders: Sequence[tuple[PodTarget, DrainRequest]], api_key: str
    ) -> list[DrainReport | None]:
        self.drained += [(t.name, request, api_key) for t, request in orders]
        return [DrainReport(True, 0, self.may_leave) for _ in orders]


def pod(name: str, revision: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"resonance.liminal.dev/revision": revision}},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8000}]}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1"},
    }
