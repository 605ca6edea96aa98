"""Scripted flows over :mod:`tests.harness.sdkclient` drivers, shared by the tests that run them against
Centrifugo (the reference) and against our worker, so both servers are held to the same script."""

from __future__ import annotations

import base64
from collections.abc import Callable

from tests.harness.sdkclient import SdkClient

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
