"""The sizing defaults come from docs/capacity.md's model and cite it."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from resonance_operator.api.spec import Resources
from resonance_operator.api.validation import parse_quantity
from resonance_operator.desired import settings, sizing

from tests.operator import fixtures

CAPACITY = Path(__file__).resolve().parents[3] / "docs" / "capacity.md"


def test_the_constants_are_the_capacity_models() -> None:
    model = CAPACITY.read_text()
    # "RSS of a started worker ... | **163.6 MiB**", "RSS per open connection ... | **7.4 KiB**", ...
    assert re.search(r"RSS of a started worker[^|]*\| \*\*163\.6 MiB\*\*", model)
    assert re.search(r"RSS per open connection[^|]*\| \*\*7\.4 KiB\*\*", model)
    assert re.search(r"worker CPU per delivered message[^|]*\| \*\*49\.8 µs\*\*", model)
    assert re.search(r"worker CPU while publishing, fixed part \| 0\.0155 cores", model)
    assert 163.6 * 2**20 <= sizing.PROCESS_BYTES < 165 * 2**20  # rounded up, never optimistic
    assert 7.4 * 2**10 <= sizing.CONNECTION_BYTES < 8.5 * 2**10
    assert (Decimal("49.8e-6"), Decimal("0.0155")) == (sizing.CPU_PER_MESSAGE_SECONDS, sizing.CPU_FIXED_CORES)
    assert "docs/capacity.md" in (sizing.__doc__ or "")


def test_the_default_pod_is_the_models_pod() -> None:
    resources = sizing.worker_resources(Resources())
    assert resources.limits == {"memory": "384Mi"} and resources.requests["memory"] == "384Mi"
    fits = sizing.memory_fits(sizing.DEFAULT_MEMORY)
    # floor((0.8 x 384 MiB - 164 MiB) / 8 KiB).
    assert fits == 18_329
    assert sizing.connections_per_pod(fixtures.cluster()) == fits
    environment = settings.worker_environment(fixtures.cluster()).plain
    assert environment["RESONANCE_LIMITS__MAX_CONNECTIONS"] == str(fits)


def test_the_default_memory_holds_what_one_core_carries_and_no_more_than_a_step_beyond() -> None:
    memory = parse_quantity(sizing.DEFAULT_MEMORY)
    assert memory % sizing.MEMORY_STEP == 0
    # The default pod's connections, each receiving a message a second, fit in its one core ...
    assert sizing.cores(sizing.memory_fits(sizing.DEFAULT_MEMORY)) <= sizing.POD_CORES
    # ... and the next step up would admit connections the core could not serve.
    bigger = f"{(memory + sizing.MEMORY_STEP) // 2**20}Mi"
    assert sizing.cores(sizing.memory_fits(bigger)) > sizing.POD_CORES
    # memory_for is memory_fits' inverse: the smallest limit fitting a number of connections.
    for connections in (2, 1_000, 18_329):
        assert sizing.memory_fits(f"{sizing.memory_for(connections)}") >= connections
        assert sizing.memory_fits(f"{sizing.memory_for(connections) - 1024}") < connections


def test_the_default_cpu_request_reaches_the_hpa_target_at_half_the_memory_connections() -> None:
    request = parse_quantity(sizing.DEFAULT_CPU_REQUEST)
    assert request == Decimal("0.7")
    half = sizing.SCALE_OUT_SHARE * sizing.memory_fits(sizing.DEFAULT_MEMORY)
    target = request * sizing.HPA_CPU_TARGET_PERCENT / 100
    # The target (70 % of the request) is the model's CPU of half the default pod's connections at one
    # message a second each, rounded up by at most 50 millicores of request.
    rounding = Decimal("0.05") * sizing.HPA_CPU_TARGET_PERCENT / 100
    assert sizing.cores(half) <= target < sizing.cores(half) + rounding
    # The whole memory-bound pod would be past the target: the HPA adds pods before the limit refuses.
    assert sizing.cores(sizing.memory_fits(sizing.DEFAULT_MEMORY)) > target


def test_a_memory_request_without_a_limit_is_left_alone() -> None:
    resources = sizing.worker_resources(Resources(requests={"memory": "1Gi"}))
    assert resources.limits == {}
    assert resources.requests == {"memory": "1Gi", "cpu": sizing.DEFAULT_CPU_REQUEST}
    cluster = fixtures.cluster(fixtures.with_worker(resources={"requests": {"memory": "1Gi"}}))
    assert sizing.connections_per_pod(cluster) == sizing.WITHOUT_MEMORY_LIMIT
