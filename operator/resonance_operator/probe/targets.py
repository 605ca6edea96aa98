"""The pure half of the probe: which worker Pods to reach and what to say to them.

:func:`pod_targets` turns listed Pods into :class:`PodTarget` s; :func:`drain_requests`
builds the ``POST /drain`` body for each Pod of a losing revision (its share of the
reconnect budget); :class:`DrainReport` reads a worker's answer. No I/O: the
rollout pass's step uses these freely, and :mod:`~resonance_operator.probe.pods`
sends them.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from resonance_operator.api.spec import DrainOptions


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


def drain_requests(
    options: DrainOptions, targets: Sequence[PodTarget], deadline_seconds: float
) -> list[DrainRequest]:
    """The ``POST /drain`` body for each of ``targets`` (the Pods of one losing revision).

    Each Pod gets its index among them, so the workers split ``reconnectsPerSecond``
    between them, and a seed of its own name, so their jitter differs but stays the
    same on every call (the call is idempotent).
    """
    return [
        DrainRequest(
            budget_per_second=options.reconnects_per_second,
            pods=len(targets),
            pod_index=index,
            window_seconds=options.window_seconds,
            remaining_threshold=options.remaining_threshold,
            # The worker wants a positive deadline; past ours the machine scales the Pods down anyway.
            deadline_seconds=max(1.0, deadline_seconds),
            seed=zlib.crc32(target.name.encode()),
        )
        for index, target in enumerate(targets)
    ]
