"""How big a worker pod is and how many connections it takes, from the capacity model. Pure.

Every number here is a named constant of ``docs/capacity.md`` ("The model": ``python -m bench.capacity``,
one worker process on the Redis engine with the environment the operator renders, fitted at 1k/5k/10k
connections and checked at 3k): a worker starts at 163.6 MiB and grows by 7.4 KiB per open connection
(the native WebSocket shell), and spends 49.8 µs of CPU per delivered message on top of 0.0155 of a core.
From it:

- a memory limit ``L`` fits ``floor((0.8 L - 164 MiB) / 8 KiB)`` connections (:func:`memory_fits`), a
  fifth of the limit kept for garbage-collector swings, queued bursts and the living core;
- a spec that names no memory gets :data:`DEFAULT_MEMORY` as request and limit: the largest multiple of
  64 MiB whose connections one core still carries at a message a second each (a worker is one process, so
  one core is all it can use; more memory would only admit connections the core cannot serve): 384Mi,
  18,329 connections;
- a spec that names no CPU gets :data:`DEFAULT_CPU_REQUEST`, sized so the HorizontalPodAutoscaler's CPU
  target is reached at half the connections the default memory fits, each receiving a message a second.
"""

from __future__ import annotations

import math
from decimal import Decimal

from resonance_operator.api.spec import Autoscaling, ResonanceCluster, Resources
from resonance_operator.api.validation import parse_quantity

PROCESS_BYTES = 164 * 2**20
"""RSS of a started worker (Python, numpy/scipy, the drivers): 163.6 MiB in docs/capacity.md, "The model",
rounded up."""
CONNECTION_BYTES = 8 * 2**10
"""RSS per open connection subscribed to a room: 7.4 KiB fitted in docs/capacity.md, rounded up."""
HEADROOM = Decimal("0.8")
"""Share of the memory limit given to connections; the rest absorbs swings."""
WITHOUT_MEMORY_LIMIT = 10_000
"""Connections per pod when nothing bounds them (a memory request but no limit, no autoscaling target)."""

POD_CORES = 1
"""Cores one worker pod can use: a worker is one Python process (docs/capacity.md's pod)."""
MEMORY_STEP = 64 * 2**20
"""The default memory is a multiple of this (a round number in a manifest)."""

CPU_PER_MESSAGE_SECONDS = Decimal("49.8e-6")
"""Worker CPU per delivered message, the connections' upkeep included: docs/capacity.md, "The model"
(measured on a loaded machine: pessimistic, which is why the request below aims at half the memory's
connections)."""
CPU_FIXED_CORES = Decimal("0.0155")
"""Worker CPU while publishing, the fixed part: docs/capacity.md, "The model"."""
SIZING_MESSAGES_PER_SECOND = 1
"""Messages a connection receives per second in the sizing (docs/capacity.md's chat: a publication a second to
each room)."""
SCALE_OUT_SHARE = Decimal("0.5")
"""Share of the default pod's memory-bound connections at which the HPA's CPU target is reached: the
model's CPU is up to 2x pessimistic, so on a free core the target is still reached before the connection
limit refuses."""
HPA_CPU_TARGET_PERCENT = Autoscaling().target_cpu_utilization_percentage
"""``autoscaling.targetCPUUtilizationPercentage``'s default (70): 30 % of a core kept for a rollout's
reconnects (docs/capacity.md, "Where the first bottleneck is")."""


def names_cpu(resources: Resources) -> bool:
    """Whether the resources give a CPU request (an explicit one, or a limit Kubernetes copies into it)."""
    return "cpu" in resources.requests or "cpu" in resources.limits


def names_memory(resources: Resources) -> bool:
    """Whether the resources name any memory (a request or a limit)."""
    return "memory" in resources.requests or "memory" in resources.limits


def memory_fits(memory_limit: str) -> int:
    """Connections a pod with this memory limit holds by the sizing rule (at least 1)."""
    usable = parse_quantity(memory_limit) * HEADROOM - PROCESS_BYTES
    return max(1, int(usable // CONNECTION_BYTES))


def cores(
    connections: Decimal | int, messages_per_second: Decimal | int = SIZING_MESSAGES_PER_SECOND
) -> Decimal:
    """Worker cores the model gives ``connections`` each receiving ``messages_per_second``."""
    return CPU_FIXED_CORES + Decimal(connections) * Decimal(messages_per_second) * CPU_PER_MESSAGE_SECONDS


def memory_for(connections: int) -> int:
    """The smallest memory limit (bytes) that :func:`memory_fits` ``connections``."""
    return math.ceil((PROCESS_BYTES + connections * CONNECTION_BYTES) / HEADROOM)


def default_memory() -> str:
    """The largest multiple of :data:`MEMORY_STEP` whose connections :data:`POD_CORES` still carries at
    :data:`SIZING_MESSAGES_PER_SECOND` each: 384Mi."""
    carried = int((POD_CORES - CPU_FIXED_CORES) / (SIZING_MESSAGES_PER_SECOND * CPU_PER_MESSAGE_SECONDS))
    steps = memory_for(carried) // MEMORY_STEP
    return f"{steps * MEMORY_STEP // 2**20}Mi"


DEFAULT_MEMORY = default_memory()
"""The workers' memory request and limit when ``spec.worker.resources`` names no memory: what one core's
connections need (docs/capacity.md's pod), which the sizing rule fills with 18,329 connections."""


def default_cpu_request() -> str:
    """The CPU request at which :data:`HPA_CPU_TARGET_PERCENT` is reached at :data:`SCALE_OUT_SHARE` of the
    default pod's connections, rounded up to 50 millicores: 700m."""
    busy = cores(SCALE_OUT_SHARE * memory_fits(DEFAULT_MEMORY))
    millicores = busy * 1000 * 100 / HPA_CPU_TARGET_PERCENT
    return f"{math.ceil(millicores / 50) * 50}m"


DEFAULT_CPU_REQUEST = default_cpu_request()
"""The workers' CPU request when ``spec.worker.resources`` names no CPU: an HPA's CPU target is a share of the
request, so without one the HPA cannot compute utilisation and never scales (set ``resources.requests.cpu`` to
change it)."""


def worker_resources(resources: Resources) -> Resources:
    """The workers' resources: the spec's, with :data:`DEFAULT_CPU_REQUEST` when it names no CPU and
    :data:`DEFAULT_MEMORY` (request and limit) when it names no memory."""
    requests, limits = dict(resources.requests), dict(resources.limits)
    if not names_cpu(resources):
        requests["cpu"] = DEFAULT_CPU_REQUEST
    if not names_memory(resources):
        requests["memory"] = limits["memory"] = DEFAULT_MEMORY
    return resources.model_copy(update={"requests": requests, "limits": limits})


def connections_per_pod(cluster: ResonanceCluster) -> int:
    """``limits.connectionsPerPod``, else the larger of the autoscaling target and what the memory limit
    (:data:`DEFAULT_MEMORY` when the spec names no memory) fits; ``WITHOUT_MEMORY_LIMIT`` when the spec names
    a memory request without a limit and there is no target. A pod must accept at least the connections the
    autoscaler aims to give it (the CRD refuses a smaller explicit limit)."""
    worker = cluster.spec.worker
    if worker.limits.connections_per_pod is not None:
        return worker.limits.connections_per_pod
    target = worker.autoscaling.target_connections_per_pod
    memory = worker_resources(worker.resources).limits.get("memory")
    if memory is None:
        return max(target or 0, WITHOUT_MEMORY_LIMIT)
    try:
        fits = memory_fits(memory)
    except ValueError:
        fits = WITHOUT_MEMORY_LIMIT  # reported as InvalidSpec by validation; nothing is rendered then
    return max(fits, target or 0)
