"""What the operator saw in the cluster for one ``ResonanceCluster``.

``kube`` fills it in; ``status`` and ``reconcile`` only read it. Keeping the
observation in one value makes the status computation a pure function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

Body = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ChildKey:
    """Identity of a child object inside the cluster's namespace."""

    api_version: str
    kind: str
    name: str

    @classmethod
    def of(cls, body: Body) -> ChildKey:
        return cls(str(body["apiVersion"]), str(body["kind"]), str(body["metadata"]["name"]))

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Observed:
    """Live children (``None`` when absent) and the Secrets the spec refers to."""

    children: Mapping[ChildKey, Body | None] = dataclasses.field(default_factory=dict)
    referenced_secrets: Mapping[str, Body | None] = dataclasses.field(default_factory=dict)
    service_monitor_crd: bool = False

    def child(self, key: ChildKey) -> Body | None:
        return self.children.get(key)
