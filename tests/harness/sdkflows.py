"""Scripted flows over :mod:`tests.harness.sdkclient` drivers, shared by the tests that run them against
Centrifugo (the reference) and against our worker, so both servers are held to the same script; and the
worker's own flow (``living_client``: token refresh, the personal channel, recovery across workers, the
living core's RPCs), the same for every official protobuf SDK."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from tests.harness.sdkclient import SdkClient, SdkClientError

Mint = Callable[[str], str]  # user -> connection token


async def shared_channel(pb: SdkClient, js: SdkClient, *, url: str, mint: Mint, channel: str) -> None:
    """A protobuf SDK ``pb`` and a JSON client ``js`` in one channel: join, publications both ways (the
    protobuf side sees JSON text as bytes), then history, presence and presence stats from the protobuf side.
    Both drivers must be started; they end connected and subscribed."""
    pb_user, js_user = f"{channel}-pb", f"{channel}-json"
    await pb.call("connect", url=url, token=mint(pb_user))
    await js.call("connect", url=url, token=mint(js_user))
    await pb.call("subscribe", channel=channel, joinLeave=True, recoverable=True)
    await js.call("subscribe", channel=channel)
    await pb.wait_for(lambda e: e.get("event") == "join" and e["info"]["user"] == js_user, what="join")
    await pb.call("publish", channel=channel, data={"from": "protobuf"})
    await js.wait_for(lambda e: e.get("event") == "publication" and e["data"] == {"from": "protobuf"})
    await js.call("publish", channel=channel, data={"from": "json"})
    got = await pb.wait_for(lambda e: e.get("event") == "publication" and e["data"] == {"from": "json"})
    assert got["info"]["user"] == js_user and got["offset"] == 2, got
    assert base64.b64decode(got["b64"]) == b'{"from":"json"}'  # JSON text, carried as bytes
    history = await pb.call("history", channel=channel, limit=10)
    assert [p["data"] for p in history["publications"]] == [{"from": "protobuf"}, {"from": "json"}]
    presence = await pb.call("presence", channel=channel)
    assert {c["user"] for c in presence["clients"].values()} == {pb_user, js_user}
    assert await pb.call("presenceStats", channel=channel) == {"numClients": 2, "numUsers": 2}
    subscribed = pb.of("subscribed", channel)[0]
    assert subscribed["recoverable"] and subscribed["streamPosition"]["epoch"], subscribed


Api = Callable[
    [str, dict[str, Any]], Awaitable[tuple[int, Any]]
]  # server API call: (method, body) -> (status, body)
MintFor = Callable[[str, float], str]  # (user, ttl seconds) -> connection token


async def living_client(
    pb: SdkClient,
    *,
    url: str,
    mint: MintFor,
    api: Api,
    user: str,
    channel: str,
    ppg: Sequence[dict[str, Any]],
) -> None:
    """What a phone app does against the worker, with one protobuf SDK ``pb`` (started, any state): connect
    with a short-lived JWT and refresh it twice; the personal channel arrives as a server-side subscription
    and carries a server API publication; a recoverable subscription survives a forced disconnect sent
    through ``api`` (another worker, the same Redis, when ``api`` is that worker's) and gets what was
    published meanwhile; the living core's ``state.report`` and ``bio.push`` with raw PPG answer."""
    pb.events.clear()  # what came before (an earlier connection) is not this flow's
    await pb.call(
        "connect",
        url=url,
        token=mint(user, 3),
        refreshTokens=True,
        minReconnectDelay=1500,
        maxReconnectDelay=2000,
    )
    personal = f"personal:#{user}"
    server_sub = await pb.wait_for(
        lambda e: e.get("event") == "server_subscribed" and e["channel"] == personal, what="personal channel"
    )
    assert server_sub["recoverable"], server_sub
    for n in (1, 2):  # the SDK asks for a token before each expiry; the second ask follows a refreshed ttl
        await pb.wait_for(lambda e, n=n: len(pb.of("get_token")) >= n, timeout=10, what=f"token request {n}")
        await pb.call("setToken", token=mint(user, 3 if n == 1 else 3600))
    dropped = [e for e in pb.events if e.get("event") in ("disconnected", "connecting") and e["code"]]
    assert not dropped, dropped  # refreshed in time: no 3005 (expired); code 0 is the SDK's own
    # From here on every token the SDK asks for (a reconnect may send its first, expired token and get
    # 109) is answered with a fresh one, whenever it is asked.
    answer = asyncio.create_task(_answer_token_requests(pb, lambda: mint(user, 3600)))
    try:
        status, _ = await api("publish", {"channel": personal, "data": {"note": "for you"}})
        assert status == 200
        got = await pb.wait_for(
            lambda e: e.get("event") == "server_publication" and e["data"] == {"note": "for you"}
        )
        assert got["channel"] == personal
        await pb.call("subscribe", channel=channel, recoverable=True)
        await api("publish", {"channel": channel, "data": {"m": 1}})
        await pb.wait_for(lambda e: e.get("event") == "publication" and e["data"] == {"m": 1})
        status, _ = await api("disconnect", {"user": user, "code": 3011, "reason": "forced"})
        assert status == 200
        await pb.wait_for(
            lambda e: e.get("event") == "connecting" and e["code"] == 3011, what="forced disconnect"
        )
        for m in (2, 3):
            await api("publish", {"channel": channel, "data": {"m": m}})
        again = await pb.wait_for(
            lambda e: e.get("event") == "subscribed" and e["channel"] == channel and e.get("wasRecovering"),
            what="recovering subscribe",
        )
        assert again["recovered"], again
        missed = [e for e in pb.of("publication", channel) if e["data"] in ({"m": 2}, {"m": 3})]
        if len(missed) < 2:
            await pb.wait_for(lambda e: e.get("event") == "publication" and e["data"] == {"m": 3})
            missed = [e for e in pb.of("publication", channel) if e["data"] in ({"m": 2}, {"m": 3})]
        assert [(e["offset"], e["data"]) for e in missed] == [(2, {"m": 2}), (3, {"m": 3})]
    finally:
        answer.cancel()
    report = await pb.call(
        "rpc", method="state.report", data={"valence": 0.5, "arousal": 0.2, "label": "calm"}
    )
    assert report["data"] is not None, report
    replies = [(await pb.call("rpc", method="bio.push", data=batch))["data"] for batch in ppg]
    assert all(r["channel"] == f"bio:#{user}" for r in replies), replies[:1]
    rates = [r["bpm"] for reply in replies for r in reply["readings"] if r["kind"] == "heart_rate"]
    assert rates and all(50 < bpm < 95 for bpm in rates), rates


async def _answer_token_requests(pb: SdkClient, fresh: Callable[[], str]) -> None:
    answered = len(pb.of("get_token"))
    while True:
        await pb.wait_for(lambda e, n=answered: len(pb.of("get_token")) > n, timeout=3600)
        answered += 1
        await pb.call("setToken", token=fresh())


async def refusals(
    client: SdkClient, *, url: str, mint: Mint, api: Api, user: str
) -> list[tuple[str | int | None, ...]]:
    """What a client is told when things go wrong, as the SDK reports it, in a form every SDK and encoding
    shares: error replies of commands (``(op, code, message)``), server-side unsubscribe and disconnect
    pushes and close frames (``(event, channel, code, reason)``). ``client`` is started and ends
    disconnected. Subscribe errors are read from the ``unsubscribed`` event (JS's ``ready()`` rejects
    with its own code 7)."""
    told: list[tuple[str | int | None, ...]] = []

    async def attempt(op: str, **args: Any) -> None:
        try:
            await client.call(op, **args)
        except SdkClientError as e:
            told.append((op, e.code, e.error.get("message")))

    with contextlib.suppress(SdkClientError):  # no token: refused with a terminal code, no reconnect
        await client.call("connect", url=url, timeout=5)
    gone = await client.wait_for(lambda e: e.get("event") == "disconnected", what="the refusal")
    told.append(("disconnected", None, gone["code"], gone["reason"]))
    client.events.clear()
    await client.call("connect", url=url, token=mint(user))
    for channel in ("nowhere:x", f"personal:#not-{user}"):  # unknown namespace; someone else's channel
        with contextlib.suppress(SdkClientError):
            await client.call("subscribe", channel=channel)
    await client.call("subscribe", channel="typing:codes")
    await attempt("presence", channel="typing:codes")  # presence and history are off in `typing`
    await attempt("history", channel="typing:codes")
    await attempt("rpc", method="no.such.method", data={})
    await client.call("subscribe", channel="chat:codes")
    assert (await api("unsubscribe", {"user": user, "channel": "chat:codes"}))[0] == 200
    await client.wait_for(lambda e: e.get("event") == "unsubscribed" and e["channel"] == "chat:codes")
    assert (await api("disconnect", {"user": user, "code": 4501, "reason": "gone for good"}))[0] == 200
    await client.wait_for(lambda e: e.get("event") == "disconnected", what="the disconnect")
    told += [
        (e["event"], e.get("channel"), e["code"], e["reason"])
        for e in client.events
        if e.get("event") in ("unsubscribed", "disconnected")
    ]
    return told


NOT_JSON = bytes([0xFF, 0xFE, 0xFD, 0x00, 0x01])
"""Publication data that is not JSON (what a protobuf client may send)."""


async def binary_data(
    publisher: SdkClient,
    pb: SdkClient,
    jsons: Sequence[SdkClient],
    late: SdkClient,
    *,
    urls: Sequence[str],
    mint: Mint,
    channel: str,
) -> None:
    """A protobuf ``publisher`` publishes :data:`NOT_JSON` into a channel with another protobuf reader ``pb``
    and JSON readers ``jsons``: the publish is accepted; the protobuf readers get the bytes; every JSON
    reader is disconnected with 3506 "inappropriate protocol", terminal for the SDK (no reconnect); a JSON
    client ``late`` that reads that history later is disconnected the same way. ``urls`` gives each client
    its server, in the order publisher, pb, jsons..., late. All drivers started."""
    clients = [publisher, pb, *jsons, late]
    assert len(urls) == len(clients)
    for n, (client, url) in enumerate(zip(clients[:-1], urls, strict=False)):
        await client.call("connect", url=url, token=mint(f"{channel}-{n}"))
        await client.call("subscribe", channel=channel)
    await publisher.call("publish", channel=channel, b64=base64.b64encode(NOT_JSON).decode())
    for reader in (publisher, pb):
        got = await reader.wait_for(lambda e: e.get("event") == "publication")
        assert base64.b64decode(got["b64"]) == NOT_JSON and got["data"] is None
    for js in jsons:
        gone = await js.wait_for(lambda e: e.get("event") == "disconnected", what="3506")
        assert (gone["code"], gone["reason"]) == (3506, "inappropriate protocol")
        assert not js.of("publication")
    await publisher.call("publish", channel=channel, data={"after": 1})
    await pb.wait_for(lambda e: e.get("event") == "publication" and e["data"] == {"after": 1})
    await asyncio.sleep(0.5)
    for js in jsons:
        assert [e["code"] for e in js.of("connecting")] == [0]  # 3506 is terminal: no reconnect
    await late.call("connect", url=urls[-1], token=mint(f"{channel}-late"))
    await late.call("subscribe", channel=channel)
    with pytest.raises(Exception, match="connection closed"):  # the call fails as the connection closes
        await late.call("history", channel=channel, limit=10)
    gone = await late.wait_for(lambda e: e.get("event") == "disconnected", what="3506")
    assert gone["code"] == 3506
