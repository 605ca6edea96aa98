"""The temporal graph wired into a real worker: states reported by a real SDK client are projected
into a real Neo4j and read back over RPC and the server API; a missing Neo4j is pain and error 108."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import centrifuge
import neo4j
import pytest
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.thyroid import PainSource
from resonance_worker.engines import MemoryEngine
from resonance_worker.eventlog import MemoryEventLog
from resonance_worker.graph.store import Neo4jGraphStore
from resonance_worker.living_settings import LivingSettings, Neo4jSettings
from resonance_worker.rpc import RpcCall, RpcError
from resonance_worker.settings import WorkerSettings
from resonance_worker.storage import Storage
from resonance_worker.transport.app import build_worker

from tests.harness.neo4j import Neo4jServer
from tests.harness.processes import free_port
from tests.harness.worker import WorkerProcess, api_call
from tests.worker.transport.conftest import Clients

StartWorker = Callable[..., WorkerProcess]


@pytest.mark.neo4j
async def test_states_reach_the_graph_and_come_back_as_queries(
    neo4j_driver: neo4j.AsyncDriver, neo4j_server: Neo4jServer, start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker(
        {
            "RESONANCE_NEO4J__URI": neo4j_server.uri,
            "RESONANCE_NEO4J__USER": neo4j_server.user,
            "RESONANCE_NEO4J__PASSWORD": neo4j_server.password,
        }
    )
    client, _ = await clients.connected(worker.ws_url, worker.token("gail"))
    reports = [(0.6, 0.7), (-0.4, 0.8), (0.5, 0.2)]
    for valence, arousal in reports:
        await client.rpc("state.report", {"valence": valence, "arousal": arousal})
        await asyncio.sleep(0.05)

    async def projected() -> list[dict[str, Any]]:
        while True:
            states = (await client.rpc("graph.timeline", {})).data["states"]
            if len(states) == len(reports):
                return list(states)
            await asyncio.sleep(0.3)

    states = await asyncio.wait_for(projected(), 60)
    assert [s["valence"] for s in states] == [0.6, -0.4, 0.5]
    middle = states[1]["at"]
    as_of = (await client.rpc("graph.as_of", {"at": middle + 0.01})).data["state"]
    assert as_of["valence"] == -0.4
    transitions = (await client.rpc("graph.transitions", {})).data
    assert transitions and isinstance(transitions, dict)
    assert (await client.rpc("graph.time_of_day", {})).data
    assert (await client.rpc("graph.partners", {})).data == {"partners": []}
    with pytest.raises(centrifuge.ReplyError) as error:
        await client.rpc("graph.as_of", {"at": "yesterday"})
    assert error.value.code == 107
    with pytest.raises(centrifuge.ReplyError) as error:
        await client.rpc("graph.timeline", [1])
    assert error.value.code == 107
    code, body = await api_call(worker, "graph.timeline", {"user": "gail"})
    assert code == 200 and [s["valence"] for s in body["result"]["states"]] == [0.6, -0.4, 0.5]
    code, body = await api_call(worker, "graph.nonsense", {"user": "gail"})
    assert code == 400 and "unknown graph query" in body["error"]["message"]
    code, body = await api_call(worker, "graph.timeline", {"user": ""})
    assert code == 400 and body["error"]["code"] == 107
    code, _ = await asyncio.to_thread(worker.api, "graph.timeline", {"user": "gail"}, "wrong-key")
    assert code == 401
    code, _ = await api_call(worker, "publish", {"channel": "chat:x", "data": {}})
    assert code == 200  # the generic server API is still there


async def test_an_unreachable_neo4j_is_pain_and_error_108() -> None:
    settings = WorkerSettings(node_name="graphless", living=LivingSettings(thyroid_threshold=50))
    store = Neo4jGraphStore(Neo4jSettings(uri=f"bolt://127.0.0.1:{free_port()}", password=None))
    living = build_worker(settings, Storage(MemoryEngine(), MemoryEventLog(), graph=store)).living
    assert living is not None and living.graph is not None
    graph = living.graph
    try:
        runner = asyncio.create_task(graph.run())  # keeps retrying the schema: pain each time
        for _ in range(100):
            if living.thyroid.status(living.clock())["sources"]["neo4j_failure"] > 0:
                break
            await asyncio.sleep(0.05)
        runner.cancel()
        assert living.thyroid.status(living.clock())["sources"]["neo4j_failure"] > 0
        for _ in range(5):  # each failed query counts; the breaker opens after 5
            with pytest.raises(RpcError) as error:
                await graph.query("timeline", "ann", {})
            assert error.value.code == ErrorCode.NOT_AVAILABLE
        with pytest.raises(RpcError) as error:
            await graph.query("timeline", "ann", {})
        assert "circuit open" in error.value.message
        graph.feel_failures()  # no projector yet: nothing to count
        with pytest.raises(RpcError) as error:
            await graph.rpc_methods()["graph.timeline"](RpcCall("graph.timeline", "x", "ann", "c"))
        assert error.value.code == ErrorCode.BAD_REQUEST
        assert PainSource.NEO4J_FAILURE.value in living.thyroid.status(living.clock())["sources"]
    finally:
        await store.close()
