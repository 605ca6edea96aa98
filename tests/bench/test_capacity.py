"""The capacity model's arithmetic (the measurements themselves: ``python -m bench.capacity``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.capacity import fit_line, main, model, predict


def row(connections: int) -> dict[str, Any]:
    """A size as a worker costing 150 MiB + 18 KiB/conn, 2 µs idle CPU per connection-second and 25 µs per
    delivery (each connection receives one message a second) would measure it."""
    idle = 0.01 + 2e-6 * connections
    return {
        "connections": connections,
        "connected": connections,
        "rss_idle_mib": 150 + 18 * connections / 1024,
        "idle_cores": idle,
        "delivered_per_s": float(connections),
        "publish_cores": idle + 0.02 + 25e-6 * connections,
        "server_cpu_ms_per_connect": 1.5,
        "redis_cpu_ms_per_connect": None,
        "redis_cpu_us_per_publication": 40.0,
        "delivery_ratio": 1.0,
    }


def test_a_line_through_exact_points_is_found() -> None:
    assert fit_line([1, 2, 3], [5, 7, 9]) == pytest.approx((3.0, 2.0))
    with pytest.raises(ValueError, match="two distinct"):
        fit_line([1, 1], [2, 3])
    with pytest.raises(ValueError, match="two points"):
        fit_line([1], [2])


def test_the_model_recovers_the_unit_costs_and_predicts_a_size_it_did_not_see() -> None:
    costs = model([row(1000), row(5000), row(10_000)])
    assert costs["process_rss_mib"] == pytest.approx(150, abs=0.1)
    assert costs["kib_per_connection"] == pytest.approx(18, abs=0.01)
    assert costs["idle_core_us_per_connection_s"] == pytest.approx(2, abs=0.001)
    # One message a second per connection: the connections' upkeep (2 µs/s each) is folded into the message.
    assert costs["cpu_us_per_delivered"] == pytest.approx(27, abs=0.01)
    assert costs["redis_cpu_ms_per_connect"] is None  # not measured is not zero
    check = row(3000)
    predicted = predict(costs, 3000, check["delivered_per_s"])
    assert predicted["rss_idle_mib"] == pytest.approx(check["rss_idle_mib"], abs=0.1)
    assert predicted["publish_cores"] == pytest.approx(check["publish_cores"], abs=0.001)


def test_a_starved_size_counts_for_memory_but_not_for_cpu() -> None:
    starved = {**row(10_000), "delivery_ratio": 0.39, "publish_cores": 0.29, "delivered_per_s": 3560.0}
    costs = model([row(1000), row(5000), starved])
    assert costs["cpu_fitted_on"] == [1000, 5000]
    assert costs["cpu_us_per_delivered"] == pytest.approx(27, abs=0.01)
    assert costs["kib_per_connection"] == pytest.approx(18, abs=0.01)
    with pytest.raises(ValueError, match="no CPU fit"):
        model([row(1000), starved])


def test_a_run_without_a_cpu_fit_keeps_its_rows(tmp_path: Path) -> None:
    starved = {**row(10_000), "delivery_ratio": 0.1, "publish_cores": 0.22, "delivered_per_s": 908.0}
    earlier = tmp_path / "capacity-earlier.json"
    earlier.write_text(json.dumps({"rows": [row(1000), starved, row(3000)]}))
    out = tmp_path / "results"
    assert main(["--refit", str(earlier), "--out", str(out)]) == 1
    (written,) = out.glob("capacity-*.json")
    document = json.loads(written.read_text())
    # The rows stay for memory and a later --refit; no model is claimed.
    assert document["rows"][1]["delivery_ratio"] == 0.1 and document["model"] is None
    assert "no CPU fit" in document["refused"]
