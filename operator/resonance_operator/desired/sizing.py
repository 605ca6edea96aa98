"""How many connections a worker pod takes: the measured cost of a connection against the pod's memory
limit, never below the autoscaling target. Pure.

Measured with ``python -m bench.sizing`` (docs/operator.md, "Sizing"): a worker with the environment the
operator renders starts at about 160 MiB and grows by 17-19 KiB per open connection (2k-10k), so a
memory limit ``L`` fits ``floor((0.8 L - 160 MiB) / 20 KiB)`` connections, a fifth of it kept for
garbage-collector swings, queued bursts and the living core.
"""

from __future__ import annotations

from decimal import Decimal

from resonance_operator.api.spec import ResonanceCluster, Resources
from resonance_operator.api.validation import parse_quantity

PROCESS_BYTES = 160 * 2**20
"""RSS of a started worker (Python, numpy/scipy, the drivers)."""
CONNECTION_BYTES = 20 * 2**10
"""RSS per open connection (19 KiB measured at 10k, rounded up)."""
HEADROOM = Decimal("0.8")
"""Share of the memory limit given to connections; the rest absorbs swings."""
WITHOUT_MEMORY_LIMIT = 10_000
"""Connections per pod when nothing bounds them (no memory limit, no autoscaling target)."""

DEFAULT_CPU_REQUEST = "250m"
"""The workers' CPU request when ``spec.worker.resources`` names no CPU: an HPA's CPU target is a share of
the request, so without one the HPA cannot compute utilisation and never scales. A quarter core is what
an idle worker with a few thousand quiet connections uses; set ``resources.requests.cpu`` to change it."""


def names_cpu(resources: Resources) -> bool:
    """Whether the resources give a CPU request (an explicit one, or a limit Kubernetes copies into it)."""
    return "cpu" in resources.requests or "cpu" in resources.limits


def worker_resources(resources: Resources) -> Resources:
    """The workers' resources: the spec's, with :data:`DEFAULT_CPU_REQUEST` when it names no CPU."""
    if names_cpu(resources):
        return resources
    return resources.model_copy(update={"requests": {**resources.requests, "cpu": DEFAULT_CPU_REQUEST}})


def memory_fits(memory_limit: str) -> int:
    """Connections a pod with this memory limit holds by the sizing rule (at least 1)."""
    usable = parse_quantity(memory_limit) * HEADROOM - PROCESS_BYTES
    return max(1, int(usable // CONNECTION_BYTES))


def connections_per_pod(cluster: ResonanceCluster) -> int:
    """``limits.connectionsPerPod``, else the larger of the autoscaling target and what the memory
    limit fits; ``WITHOUT_MEMORY_LIMIT`` when neither is there. A pod must accept at least the
    connections the autoscaler aims to give it (the CRD refuses a smaller explicit limit)."""
    worker = cluster.spec.worker
    if worker.limits.connections_per_pod is not None:
        return worker.limits.connections_per_pod
    target = worker.autoscaling.target_connections_per_pod
    memory = worker.resources.limits.get("memory")
    if memory is None:
        return max(target or 0, WITHOUT_MEMORY_LIMIT)
    try:
        fits = memory_fits(memory)
    except ValueError:
        fits = WITHOUT_MEMORY_LIMIT  # reported as InvalidSpec by validation; nothing is rendered then
    return max(fits, target or 0)
