"""Feature flags on real worker processes, driven by the real centrifuge-python SDK: the connect
result carries a client's flags, a rewritten flag file reaches connected clients on
``system:features`` without a restart (the PID stays), a ConfigMap-style symlink swap is seen, a
bad file changes nothing, and a gated RPC method or namespace is refused for users outside."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import centrifuge
import pytest
from resonance_worker.domain.features import version_of

from tests.harness.worker import API_KEY, WorkerProcess
from tests.worker.transport.conftest import Clients, SubRecorder
from tests.worker.transport.test_bulkhead import eventually
from tests.worker.transport.test_sdk import metric

GATED = {
    "name": "beta-echo",
    "targeting": {"users": ["alice"]},
    "gates": {"rpc": ["echo"], "namespaces": ["chat"]},
    "outcomes": ["whoami", "answered"],
}


BASE: list[dict[str, Any]] = [GATED, {"name": "new-lobby", "rollout": 0}]


def write_configmap(directory: Path, flags: list[dict[str, Any]]) -> None:
    """Write the flags as the kubelet updates a ConfigMap volume: a new timestamped directory,
    a ``..data`` symlink swapped to it atomically, and ``features.json`` a symlink through it."""
    target = Path(tempfile.mkdtemp(prefix="..gen", dir=directory))
    (target / "features.json").write_text(json.dumps(flags))
    tmp = directory / "..data_tmp"
    tmp.symlink_to(target.name)
    os.replace(tmp, directory / "..data")
    link = directory / "features.json"
    if not link.is_symlink():
        link.symlink_to("..data/features.json")


@pytest.fixture(scope="module")
def flag_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("features")
    write_configmap(directory, BASE)
    return directory


@pytest.fixture(scope="module")
def shared_flag_worker(tmp_path_factory: pytest.TempPathFactory, flag_dir: Path) -> Iterator[WorkerProcess]:
    """One worker for the module (each test puts the base flags back first)."""
    env = {
        "RESONANCE_FEATURES_FILE": str(flag_dir / "features.json"),
        "RESONANCE_FEATURES_POLL_SECONDS": "0.2",
    }
    worker = WorkerProcess(tmp_path_factory.mktemp("flag-worker"), env).start()
    yield worker
    worker.stop()


@pytest.fixture
async def flag_worker(shared_flag_worker: WorkerProcess, flag_dir: Path) -> WorkerProcess:
    """The module's worker with the base flags in force."""
    write_configmap(flag_dir, BASE)
    version = version_of(BASE)

    async def in_force() -> bool:
        status, shown = await asyncio.to_thread(
            shared_flag_worker.http, "GET", "/features", None, {"Authorization": f"apikey {API_KEY}"}
        )
        return status == 200 and shown["version"] == version

    await eventually(in_force, within_s=10, what="the base flags in force")
    return shared_flag_worker


async def connected_with_flags(
    clients: Clients, worker: WorkerProcess, user: str
) -> tuple[centrifuge.Client, dict[str, Any], SubRecorder]:
    client, events = clients.new(worker.ws_url, worker.token(user))
    await client.connect()
    ctx = await events.wait_for("connected")
    features = SubRecorder()
    sub = client.new_subscription("system:features", events=features)
    await sub.subscribe()
    await sub.ready(timeout=10)
    return client, ctx.data["features"], features


async def next_flags(events: SubRecorder, version: str, timeout: float = 5.0) -> dict[str, Any]:
    """The first publication on system:features of another version than ``version``."""

    async def until() -> dict[str, Any]:
        while True:
            ctx = await events.wait_for("publication", timeout=timeout)
            if ctx.pub.data["version"] != version:
                return dict(ctx.pub.data)

    return await asyncio.wait_for(until(), timeout)


async def test_connect_result_carries_flags_and_a_flip_reaches_clients_without_a_restart(
    flag_worker: WorkerProcess, flag_dir: Path, clients: Clients
) -> None:
    pid = flag_worker.process.pid
    _, alice_flags, alice_events = await connected_with_flags(clients, flag_worker, "alice")
    _, bob_flags, bob_events = await connected_with_flags(clients, flag_worker, "bob")
    assert alice_flags["flags"] == {"beta-echo": True, "new-lobby": False}
    assert bob_flags["flags"] == {"beta-echo": False, "new-lobby": False}

    write_configmap(flag_dir, [GATED, {"name": "new-lobby", "rollout": 100}])
    alice_new = await next_flags(alice_events, alice_flags["version"])
    bob_new = await next_flags(bob_events, bob_flags["version"])
    assert alice_new["flags"] == {"beta-echo": True, "new-lobby": True}
    assert bob_new["flags"] == {"beta-echo": False, "new-lobby": True}
    assert flag_worker.process.pid == pid
    assert flag_worker.process.proc.poll() is None


async def test_a_bad_flag_file_changes_nothing_and_is_counted(
    flag_worker: WorkerProcess, flag_dir: Path, clients: Clients
) -> None:
    _, flags, _ = await connected_with_flags(clients, flag_worker, "bob")
    invalid_before = metric(flag_worker.metrics(), "resonance_feature_reloads_total", result="invalid")
    bad = [
        {"name": "new-lobby", "rollout": 100},
        {"name": "split", "variants": [{"name": "a", "weight": 60}]},
    ]
    write_configmap(flag_dir, bad)

    async def refused() -> bool:
        text = await asyncio.to_thread(flag_worker.metrics)
        return metric(text, "resonance_feature_reloads_total", result="invalid") > invalid_before

    await eventually(refused, within_s=10, what="the bad flag file refused")
    assert any("feature 'split'" in json.dumps(r) for r in flag_worker.log_records())
    status, shown = flag_worker.http("GET", "/features", headers={"Authorization": f"apikey {API_KEY}"})
    assert status == 200
    assert shown["version"] == flags["version"]  # the old set is still in force, whole
    _, late_flags, _ = await connected_with_flags(clients, flag_worker, "bob")
    assert late_flags["flags"] == {"beta-echo": False, "new-lobby": False}


async def test_a_gated_rpc_and_namespace_are_refused_for_users_outside_the_flag(
    flag_worker: WorkerProcess, clients: Clients
) -> None:
    outcomes = "resonance_feature_outcomes_total"
    before = flag_worker.metrics()
    alice, _, _ = await connected_with_flags(clients, flag_worker, "alice")
    bob, _, _ = await connected_with_flags(clients, flag_worker, "bob")
    assert (await alice.rpc("echo", {"x": 1})).data == {"x": 1}
    with pytest.raises(centrifuge.ReplyError) as refused:
        await bob.rpc("echo", {"x": 1})
    assert refused.value.code == 103
    assert "beta-echo" in refused.value.message
    assert (await bob.rpc("whoami", {})).data["user"] == "bob"  # ungated: allowed
    await alice.rpc("whoami", {})
    assert (await alice.rpc("features.outcome", {"outcome": "answered"})).data == {"counted": ["beta-echo"]}
    with pytest.raises(centrifuge.ReplyError) as unknown:
        await alice.rpc("features.outcome", {"outcome": "never-listed"})
    assert unknown.value.code == 107 and "never-listed" in unknown.value.message

    lab = bob.new_subscription("chat:one", events=(events := SubRecorder()))
    await lab.subscribe()
    error = await events.wait_for("unsubscribed")
    assert (error.code, error.reason) == (103, "chat:one needs the feature 'beta-echo'")

    text = flag_worker.metrics()
    assert metric(text, "resonance_feature_exposures_total", flag="beta-echo", variant="on") >= 1
    assert metric(text, "resonance_feature_exposures_total", flag="beta-echo", variant="off") >= 1
    for outcome, variant in (("whoami", "on"), ("whoami", "off"), ("answered", "on")):
        labels = {"flag": "beta-echo", "outcome": outcome, "variant": variant}
        assert metric(text, outcomes, **labels) - metric(before, outcomes, **labels) == 1, labels
    status, shown = flag_worker.http("GET", "/features", headers={"Authorization": f"apikey {API_KEY}"})
    assert status == 200
    counts = next(f for f in shown["flags"] if f["name"] == "beta-echo")["counts"]
    assert counts["outcomes"]["on:answered"] >= 1 and counts["exposures"]["off"] >= 1
    assert flag_worker.http("GET", "/features")[0] == 401  # the API key is required
