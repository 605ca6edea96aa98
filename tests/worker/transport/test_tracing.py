"""Traces from a real worker to a real OpenTelemetry Collector (built from the Go module proxy):
a client's ``state.report`` (its state published to its rooms and journalled) followed through the
RPC, the event log and the projector's write to a real Neo4j, as one trace the client started with
the ``traceparent`` of its connect data; a server API call continues its caller's trace too."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request
from collections.abc import Callable

import aiohttp
import neo4j
import pytest

from tests.harness.neo4j import Neo4jServer
from tests.harness.otelcol import Collector, Span
from tests.harness.worker import API_KEY, WorkerProcess
from tests.worker.transport.conftest import Clients

StartWorker = Callable[..., WorkerProcess]
STARTUP_S = 120.0
"""The SDK, its exporter and the Neo4j driver take their time to import on a loaded 2-core machine."""


def new_traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def chain(spans: list[Span], leaf: Span) -> list[str]:
    """The names from ``leaf`` up to the root of its trace (in these spans)."""
    by_id = {s.span_id: s for s in spans}
    names = [leaf.name]
    while leaf.parent_span_id in by_id:
        leaf = by_id[leaf.parent_span_id]
        names.append(leaf.name)
    return names


@pytest.mark.neo4j
async def test_a_clients_state_report_is_traced_to_its_neo4j_projection(
    neo4j_driver: neo4j.AsyncDriver,
    neo4j_server: Neo4jServer,
    start_worker: StartWorker,
    clients: Clients,
    collector: Collector,
) -> None:
    worker = start_worker(
        {
            "RESONANCE_NEO4J__URI": neo4j_server.uri,
            "RESONANCE_NEO4J__USER": neo4j_server.user,
            "RESONANCE_NEO4J__PASSWORD": neo4j_server.password,
            "RESONANCE_TRACING__ENABLED": "true",
            "RESONANCE_TRACING__ENDPOINT": collector.http_endpoint,
            "RESONANCE_TRACING__SAMPLE_RATIO": "0",  # only what a sampled remote parent asks for
            "RESONANCE_TRACING__SERVICE_NAME": "worker-under-test",
        },
        timeout=STARTUP_S,
    )
    trace_id, traceparent = new_traceparent()
    client, _ = await clients.connected(
        worker.ws_url, worker.token("tess"), data={"traceparent": traceparent}
    )
    await client.rpc("room.join", {"room": "tea"})
    await client.rpc("state.report", {"valence": 0.4, "arousal": 0.6})
    sub = client.new_subscription("chat:traced")
    await sub.subscribe()
    await sub.publish({"text": "hello"})

    def projected(spans: list[Span]) -> bool:
        return any(
            s.name == "graph.project" and s.attributes.get("resonance.event") == "state_changed"
            for s in spans
        )

    spans = [
        s for s in await asyncio.to_thread(collector.wait_for_spans, projected, 60) if s.trace_id == trace_id
    ]
    projection = next(
        s for s in spans if s.name == "graph.project" and s.attributes["resonance.event"] == "state_changed"
    )
    assert chain(spans, projection) == ["graph.project", "eventlog.append", "rpc state.report"]
    report = next(s for s in spans if s.name == "rpc state.report")
    assert report.parent_span_id == traceparent.split("-")[2]  # the client's own span
    assert report.attributes["resonance.user"] == "tess" and report.attributes["rpc.method"] == "state.report"
    assert projection.attributes["db.system"] == "neo4j" and projection.service == "worker-under-test"
    names = {s.name for s in spans}
    assert {"connect", "rpc room.join", "subscribe", "publish", "engine.publish", "fanout"} <= names
    publish = next(s for s in spans if s.name == "fanout")
    assert chain(spans, publish)[:3] == ["fanout", "engine.publish", "publish"]
    # Nothing private on any span: ids, names and counts only.
    for span in spans:
        assert not {"valence", "arousal", "token", "data"} & {
            key.rsplit(".", 1)[-1] for key in span.attributes
        }
        assert "0.4" not in map(str, span.attributes.values())

    # A server API call continues its caller's trace (its ``traceparent`` header).
    api_trace, api_parent = new_traceparent()
    request = urllib.request.Request(
        f"{worker.base_url}/api/publish",
        data=b'{"channel": "chat:traced", "data": {"text": "from the back end"}}',
        headers={
            "Authorization": f"apikey {API_KEY}",
            "traceparent": api_parent,
            "Content-Type": "application/json",
        },
    )
    with await asyncio.to_thread(urllib.request.urlopen, request, None, 10) as reply:
        assert reply.status == 200
    api_spans = await asyncio.to_thread(
        collector.wait_for_spans,
        lambda s: any(x.trace_id == api_trace and x.name == "api publish" for x in s),
        30,
    )
    api = next(s for s in api_spans if s.trace_id == api_trace and s.name == "api publish")
    assert api.parent_span_id == api_parent.split("-")[2]
    assert api.attributes["http.response.status_code"] == 200


async def test_an_untraced_client_leaves_no_spans_at_sample_ratio_zero(
    start_worker: StartWorker, clients: Clients, collector: Collector
) -> None:
    worker = start_worker(
        {
            "RESONANCE_TRACING__ENABLED": "true",
            "RESONANCE_TRACING__ENDPOINT": collector.http_endpoint,
            "RESONANCE_TRACING__SAMPLE_RATIO": "0",
        },
        timeout=STARTUP_S,
    )
    client, _ = await clients.connected(worker.ws_url, worker.token("ulla"))
    sub = client.new_subscription("chat:quiet")
    await sub.subscribe()
    await sub.publish({"text": "x"})
    # A traced client afterwards: its spans arrive, the untraced client's never do.
    trace_id, traceparent = new_traceparent()
    other, _ = await clients.connected(worker.ws_url, worker.token("vera"), data={"traceparent": traceparent})
    await other.new_subscription("chat:loud").subscribe()
    spans = await asyncio.to_thread(
        collector.wait_for_spans,
        lambda s: any(x.trace_id == trace_id and x.name == "subscribe" for x in s),
        30,
    )
    assert {s.trace_id for s in spans} == {trace_id}


async def test_a_connections_log_lines_keep_their_fields_in_the_human_format(
    start_worker: StartWorker, collector: Collector
) -> None:
    worker = start_worker(
        {
            "RESONANCE_LOG_JSON": "false",
            "RESONANCE_TRACING__ENABLED": "true",
            "RESONANCE_TRACING__ENDPOINT": collector.http_endpoint,
        },
        timeout=STARTUP_S,
    )
    trace_id, traceparent = new_traceparent()
    async with aiohttp.ClientSession() as session, session.ws_connect(worker.ws_url) as ws:
        connect = {"id": 1, "connect": {"token": worker.token("xena"), "data": {"traceparent": traceparent}}}
        await ws.send_str(json.dumps(connect))
        assert "connect" in (await ws.receive_json(timeout=10))
        await ws.send_str("this is not a command")
        while not ws.closed and (await ws.receive(timeout=10)).type is not aiohttp.WSMsgType.CLOSE:
            pass
        code = ws.close_code

    def lines_of(text: str) -> tuple[str, str] | None:
        connected = [line for line in text.splitlines() if "client connected" in line]
        closing = [line for line in text.splitlines() if "disconnecting client" in line]
        return (connected[0], closing[0]) if connected and closing else None

    def wait_for_lines() -> tuple[str, str] | None:
        deadline = time.monotonic() + 20
        while (found := lines_of(worker.log())) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        return found

    found = await asyncio.to_thread(wait_for_lines)
    assert found is not None, worker.log()[-2000:]
    connected, closing = found
    assert " INFO resonance.worker.node: client connected " in connected
    assert "user=xena" in connected and f"trace_id={trace_id}" in connected and "ip=127.0.0.1" in connected
    client = connected.split("client=")[1].split()[0]
    assert f"client={client}" in closing and "user=xena" in closing
    assert f"code={code}" in closing and "reason=" in closing
