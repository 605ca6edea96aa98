"""The side-by-side report of ``make bench`` (the runs themselves: test_against_centrifugo)."""

from __future__ import annotations

from typing import Any

from bench.centrifugo.config import Engine
from bench.load.scenario import Kind
from bench.run import MULTI_PROCESS, figure, machine, scenarios, summary, table


def result(product: str, kind: str, p99: float, per_core: float | None, kib: float) -> dict[str, Any]:
    return {
        "target": f"{product}-memory",
        "scenario": {"kind": kind, "connections": 100},
        "idle": {"server_kib_per_connection": kib},
        "publish": {"latency_ms": {"p99_ms": p99}, "delivered_msgs_per_server_core_s": per_core},
    }


def test_figures_are_read_by_dotted_path() -> None:
    r = result("worker", "chat", 12.5, 1000.0, 18.0)
    assert figure(r, "publish", "latency_ms.p99_ms") == 12.5
    assert figure(r, "publish", "latency_ms.p50_ms") is None
    assert figure(r, "storm", "reconnects_per_s") is None
    assert figure(r, "idle", "server_kib_per_connection.deeper") is None


def test_table_pairs_products_and_gives_worker_over_centrifugo() -> None:
    rows = table(
        [
            result("centrifugo", "chat", 10.0, 4000.0, 40.0),
            result("worker", "chat", 25.0, 1000.0, 20.0),
            result("centrifugo", "broadcast", 5.0, None, 30.0),
        ]
    ).splitlines()
    assert rows[0].startswith("| scenario | figure | centrifugo | worker |")
    assert "| chat N=100 | p99 ms | 10 | 25 | 2.50 |" in rows
    assert "| chat N=100 | msgs per server core-s | 4000 | 1000 | 0.25 |" in rows
    assert "| chat N=100 | server KiB/conn | 40 | 20 | 0.50 |" in rows
    assert "| broadcast N=100 | p99 ms | 5 | — | — |" in rows
    assert not any("broadcast N=100 | msgs per server core-s" in row for row in rows)


def test_a_baseline_worker_gets_its_own_column_and_every_row_its_load() -> None:
    runs = [
        result("centrifugo", "chat", 10.0, 4000.0, 40.0),
        result("worker", "chat", 20.0, 3000.0, 20.0),
        result("base", "chat", 40.0, 1500.0, 20.0),
    ]
    for run, load in zip(runs, (0.5, 1.5, 2.5), strict=True):
        run["load_average"] = {"start": [load, 1.0, 1.0], "end": [load + 0.1, 1.0, 1.0]}
    rows = table(runs).splitlines()
    assert rows[0].endswith("| base | worker / base |")
    assert "| chat N=100 | msgs per server core-s | 4000 | 3000 | 0.75 | 1500 | 2.00 |" in rows
    (per_core,) = [r for r in summary(runs) if r["figure"] == "msgs per server core-s"]
    assert per_core["worker_vs_centrifugo"] == 0.75 and per_core["worker_vs_base"] == 2.0
    assert per_core["load_1min"] == {"centrifugo": [0.5, 0.6], "worker": [1.5, 1.6], "base": [2.5, 2.6]}


def test_both_plans_are_valid_and_cover_every_scenario() -> None:
    quick = scenarios(quick=True)
    full = scenarios(quick=False)
    assert {p.scenario.kind for p in full} == set(Kind)
    # make bench: the memory engine on one node, Redis on two (cross-node), the reconnect storm (connects
    # are every scenario's ramp), chat on Redis over two worker processes; broadcast and idle only in the
    # full set.
    assert {(p.scenario.kind, p.engine, p.nodes, p.processes) for p in quick} == {
        (Kind.CHAT, Engine.MEMORY, 1, 1),
        (Kind.CROSS_NODE, Engine.REDIS, 2, 1),
        (Kind.RECONNECT_STORM, Engine.REDIS, 1, 1),
        (Kind.CHAT, Engine.REDIS, 1, 2),
    }
    assert max(p.scenario.connections for p in quick) < max(p.scenario.connections for p in full) == 10_000
    for planned in full:
        assert (planned.nodes == 2) == (planned.scenario.kind is Kind.CROSS_NODE)
    # Issue 19: 10,000 connections on the Redis engine across two worker processes, with its own name.
    (processes,) = [p for p in full if p.processes > 1]
    assert (processes.engine, processes.scenario.connections, processes.name) == (
        Engine.REDIS,
        10_000,
        MULTI_PROCESS,
    )
    assert len({p.name for p in full if p.scenario.encoding.value == "json"}) == len(Kind) + 1


def test_a_plan_can_be_sized_on_the_way_to_ten_thousand() -> None:
    # --connections 5000: the same scenarios, chat at 5,000 and the two-node ones at half of it.
    sized = {p.name: p.scenario.connections for p in scenarios(quick=False, connections=5000)}
    assert sized[MULTI_PROCESS] == sized["chat"] == 5000
    assert sized["cross_node"] == sized["reconnect_storm"] == 2500
    quick = [p.name for p in scenarios(quick=True)]
    assert [p.name for p in scenarios(quick=True, connections=5000)] == quick


def test_a_plan_entry_of_its_own_name_gets_rows_of_its_own() -> None:
    memory = [result("centrifugo", "chat", 10.0, 4000.0, 40.0), result("worker", "chat", 20.0, 3000.0, 20.0)]
    redis = [result("centrifugo", "chat", 30.0, 2000.0, 40.0), result("worker", "chat", 15.0, 3000.0, 20.0)]
    for run in redis:
        run["plan"] = MULTI_PROCESS
    rows = table(memory + redis).splitlines()
    assert "| chat N=100 | p99 ms | 10 | 20 | 2.00 |" in rows
    assert f"| {MULTI_PROCESS} N=100 | p99 ms | 30 | 15 | 0.50 |" in rows


def test_machine_description_names_versions() -> None:
    described = machine()
    assert described["cpus"] >= 1
    assert described["centrifugo"] == "6.9.1"
    assert described["python"].startswith("3.11")
    assert set(described) >= {"cpu", "memory_gib", "kernel", "go", "redis", "load_average_at_start"}
