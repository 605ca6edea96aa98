"""A room's shared notes (``notes:<room>``) on a real worker with the centrifuge-python SDK:
its members write, others read only; a plain publish into a document namespace is refused."""

from __future__ import annotations

import base64

import centrifuge
import pycrdt
import pytest
from resonance_worker.domain.ydocs import SyncKind, parse_message, sync_message

from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients


def update(text: str) -> str:
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.get("t", type=pycrdt.Text).insert(0, text)
    return base64.b64encode(sync_message(SyncKind.UPDATE, doc.get_update())).decode()


async def test_room_members_write_the_notes_and_others_only_read(
    worker: WorkerProcess, clients: Clients
) -> None:
    member, _ = await clients.connected(worker.ws_url, worker.token("mia"))
    outsider, _ = await clients.connected(worker.ws_url, worker.token("otto"))
    await member.rpc("room.join", {"room": "notes-r1"})
    await member.rpc("doc.send", {"channel": "notes:notes-r1", "messages": [update("agenda")]})
    with pytest.raises(centrifuge.ReplyError) as refused:
        await outsider.rpc("doc.send", {"channel": "notes:notes-r1", "messages": [update("graffiti")]})
    assert refused.value.code == 103 and "read-only" in refused.value.message
    reader: pycrdt.Doc = pycrdt.Doc()
    step1 = base64.b64encode(sync_message(SyncKind.STEP1, reader.get_state())).decode()
    reply = await outsider.rpc("doc.send", {"channel": "notes:notes-r1", "messages": [step1]})
    step2 = parse_message(base64.b64decode(reply.data["messages"][0]))
    reader.apply_update(step2.payload)  # type: ignore[union-attr]
    assert str(reader.get("t", type=pycrdt.Text)) == "agenda"


async def test_a_plain_publish_into_a_document_is_refused(worker: WorkerProcess, clients: Clients) -> None:
    client, _ = await clients.connected(worker.ws_url, worker.token("pat"))
    sub = client.new_subscription("doc:plain")
    await sub.subscribe()
    with pytest.raises(centrifuge.ReplyError) as refused:
        await sub.publish({"m": update("x")})
    assert refused.value.code == 103
