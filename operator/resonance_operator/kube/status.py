"""Write a cluster's status only when it changed, with an optimistic lock.

As CloudNativePG's ``PatchWithOptimisticLock``: the merge patch carries the
``resourceVersion`` the status was computed against, so a status computed from a
stale read is refused (409) instead of written over a newer one. On a conflict the
cluster is read again and the status rendered again against what is there now
(``render`` is pure), then compared and written, up to :data:`ATTEMPTS` times.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.errors import ConflictError
from resonance_operator.kube.children import cluster_path
from resonance_operator.kube.client import KubeClient
from resonance_operator.status import compute

logger = logging.getLogger("resonance.operator.kube")

ATTEMPTS = 5
Render = Callable[[Mapping[str, Any]], dict[str, Any]]
"""The new status, given the status it replaces."""


@dataclasses.dataclass(frozen=True)
class StatusWrite:
    """What the status was, what it is now, and whether it was written (unchanged: not)."""

    previous: Mapping[str, Any]
    status: dict[str, Any]
    written: bool


async def write_status(kube: KubeClient, cluster: ResonanceCluster, render: Render) -> StatusWrite:
    """Render the status against the cluster as read and write it if it changed, over that version only.

    Raises :class:`~resonance_operator.errors.ConflictError` when the cluster kept changing for
    :data:`ATTEMPTS` reads in a row; a cluster deleted meanwhile gets no status.
    """
    path = cluster_path(cluster.namespace, cluster.name)
    previous: Mapping[str, Any] = cluster.status
    version = cluster.metadata.resource_version
    attempt = 1
    while True:
        status = render(previous)
        if not compute.changed(previous, status):
            return StatusWrite(previous, status, written=False)
        try:
            await kube.patch_status(path, status, resource_version=version or None)
            return StatusWrite(previous, status, written=True)
        except ConflictError:
            if attempt >= ATTEMPTS:
                raise
        attempt += 1
        logger.info("status of %s/%s changed meanwhile; reading it again", cluster.namespace, cluster.name)
        fresh = await kube.get(path)
        if fresh is None:
            return StatusWrite(previous, status, written=False)
        previous = fresh.get("status") or {}
        version = str(fresh.get("metadata", {}).get("resourceVersion", ""))
