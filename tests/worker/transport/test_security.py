"""Attacks on a real worker process: a JWT attack matrix, channel authorization,
IP allow/deny lists, forwarded-for spoofing, the audit log, and tokens kept out
of the logs. Connections are raw WebSockets (aiohttp) so each answer - an error
reply or a close code - is seen exactly as sent."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import jwt
import pydantic
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from resonance_worker.settings import WorkerSettings

from tests.harness.worker import API_KEY, JWT_SECRET, WorkerProcess

StartWorker = Callable[..., WorkerProcess]

AUDIENCE = "resonance-clients"
ISSUER = "https://auth.example.test"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT put together by hand, as an attacker would (pyjwt refuses to HMAC with a PEM)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    return signing_input + "." + _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_public_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return (
        rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def strict_worker(tmp_path_factory: pytest.TempPathFactory, rsa_public_pem: str) -> Iterator[WorkerProcess]:
    """HS256 and RS256 keys, a required audience and issuer, a small message limit."""
    process = WorkerProcess(
        tmp_path_factory.mktemp("strict"),
        {
            "RESONANCE_JWT_RSA_PUBLIC_KEY": rsa_public_pem,
            "RESONANCE_JWT_AUDIENCE": AUDIENCE,
            "RESONANCE_JWT_ISSUER": ISSUER,
            "RESONANCE_LIMITS__MAX_MESSAGE_BYTES": "16384",
            "RESONANCE_LOG_LEVEL": "DEBUG",
            # The living core is on: the matrix's refusals all come from one address, whose pain
            # is capped, so no attempt is shed before it reaches token verification.
        },
        name="strict",
    ).start()
    yield process
    process.stop()


def claims(user: str = "mallory", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 600, **extra}


async def connect_outcome(worker: WorkerProcess, token: str, *, url_token: bool = False) -> tuple[str, Any]:
    """``("connected", user)``, ``("error", code)`` or ``("closed", close code)``."""
    url = worker.ws_url + (f"?token={token}" if url_token else "")
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except aiohttp.WSServerHandshakeError as exc:
            return "refused", exc.status
        async with ws:
            params: dict[str, Any] = {} if url_token else {"token": token}
            await ws.send_str(json.dumps({"id": 1, "connect": params}))
            message = await ws.receive(timeout=10)
            if message.type is aiohttp.WSMsgType.TEXT:
                reply = json.loads(message.data.split("\n")[0])
                if "error" in reply:
                    return "error", reply["error"]["code"]
                return "connected", reply["connect"]["client"]
            return "closed", ws.close_code


def attack_tokens(rsa_key: rsa.RSAPrivateKey, rsa_public_pem: str) -> dict[str, tuple[str, tuple[str, Any]]]:
    """Every attack, with the answer the worker must give."""
    now = int(time.time())
    private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    good_hs = jwt.encode(claims(), JWT_SECRET, "HS256")
    head, _, signature = good_hs.split(".")
    forged_body = _b64(json.dumps(claims("admin")).encode())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    invalid = ("closed", 3500)
    expired = ("error", 109)
    return {
        "alg none": (hand_signed({"alg": "none", "typ": "JWT"}, claims(), None), invalid),
        "alg NoNe": (hand_signed({"alg": "NoNe", "typ": "JWT"}, claims(), None), invalid),
        "HS256 keyed with the RSA public PEM": (
            hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), rsa_public_pem.encode()),
            invalid,
        ),
        "forged payload on a real signature": (f"{head}.{forged_body}.{signature}", invalid),
        "signature of another RSA key": (jwt.encode(claims(), other_key, "RS256"), invalid),
        "wrong secret": (jwt.encode(claims(), JWT_SECRET + "x", "HS256"), invalid),
        "wrong audience": (jwt.encode(claims(aud="someone-else"), JWT_SECRET, "HS256"), invalid),
        "no audience": (jwt.encode({**claims(), "aud": None}, JWT_SECRET, "HS256"), invalid),
        "wrong issuer": (jwt.encode(claims(iss="https://evil.test"), JWT_SECRET, "HS256"), invalid),
        "unknown algorithm": (jwt.encode(claims(), rsa_key, "PS256"), invalid),
        "not a JWT": ("definitely.not.a-jwt", invalid),
        "expired": (jwt.encode(claims(exp=now - 60), private_pem, "RS256"), expired),
        "not yet valid": (jwt.encode(claims(nbf=now + 600), JWT_SECRET, "HS256"), expired),
        "exp of the wrong type": (jwt.encode(claims(exp="never"), JWT_SECRET, "HS256"), invalid),
        "valid RS256 (control)": (jwt.encode(claims(), private_pem, "RS256"), ("connected", None)),
        "valid HS256 (control)": (good_hs, ("connected", None)),
    }


async def test_jwt_attack_matrix(
    strict_worker: WorkerProcess, rsa_key: rsa.RSAPrivateKey, rsa_public_pem: str
) -> None:
    outcomes = {}
    tokens = attack_tokens(rsa_key, rsa_public_pem)
    for name, (token, _) in tokens.items():
        kind, detail = await connect_outcome(strict_worker, token)
        outcomes[name] = (kind, None if kind == "connected" else detail)
    assert outcomes == {name: expected for name, (_, expected) in tokens.items()}
    # The same refusals through the URL query (centrifuge-js's `?token=`).
    assert await connect_outcome(strict_worker, tokens["alg none"][0], url_token=True) == ("closed", 3500)
    # All those refusals from one address left the worker calm: its pain budget is a quarter of
    # the threshold, so an attacker cannot make it shed anyone else's new connections.
    code, thyroid = await asyncio.to_thread(strict_worker.http, "GET", "/thyroid/status")
    assert code == 200 and thyroid["state"] == "calm" and thyroid["pain"] <= 2.5
    assert thyroid["sources"]["auth_failure"] > 0
    # Nothing of any token reached the logs, not even at DEBUG.
    log = strict_worker.log()
    for token, _ in tokens.values():
        for part in token.split("."):
            if len(part) > 16:
                assert part not in log


async def test_oversized_tokens_are_refused_before_parsing(strict_worker: WorkerProcess) -> None:
    huge = jwt.encode(claims(padding="x" * 40_000), JWT_SECRET, "HS256")
    assert await connect_outcome(strict_worker, huge) == ("closed", 1009)
    # In the URL the request line is too long for the HTTP parser: a 4xx before any WebSocket.
    kind, status = await connect_outcome(strict_worker, huge, url_token=True)
    assert kind == "refused" and 400 <= status < 500
    assert huge[-40:] not in strict_worker.log()


async def raw_session(worker: WorkerProcess, user: str, http: aiohttp.ClientSession) -> Any:
    ws = await http.ws_connect(worker.ws_url)
    await ws.send_str(json.dumps({"id": 1, "connect": {"token": worker.token(user)}}))
    assert "connect" in json.loads((await ws.receive(timeout=10)).data.split("\n")[0])
    return ws


async def subscribe_outcome(ws: Any, cmd_id: int, channel: str, token: str | None = None) -> Any:
    params = {"channel": channel, **({"token": token} if token else {})}
    await ws.send_str(json.dumps({"id": cmd_id, "subscribe": params}))
    message = await ws.receive(timeout=10)
    if message.type is not aiohttp.WSMsgType.TEXT:
        return ("closed", ws.close_code)
    reply = json.loads(message.data.split("\n")[0])
    return ("error", reply["error"]["code"]) if "error" in reply else ("subscribed", None)


async def test_channel_authorization(worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        alice = await raw_session(worker, "alice", http)
        assert await subscribe_outcome(alice, 2, "personal:#bob") == ("error", 103)
        assert await subscribe_outcome(alice, 3, "personal:#bob,carol") == ("error", 103)
        # Her own is hers: already subscribed server-side (105), not refused.
        assert await subscribe_outcome(alice, 4, "personal:#alice") == ("error", 105)
        assert await subscribe_outcome(alice, 5, "chat:$board") == ("error", 103)
        # A subscription token made out to bob is no key for alice: invalid token, closed.
        bobs = worker.sub_token("bob", "chat:$board")
        assert await subscribe_outcome(alice, 6, "chat:$board", bobs) == ("closed", 3500)
        alice_again = await raw_session(worker, "alice", http)
        own = worker.sub_token("alice", "chat:$board")
        assert await subscribe_outcome(alice_again, 7, "chat:$other", own) == ("closed", 3500)
        alice_third = await raw_session(worker, "alice", http)
        forged = jwt.encode({"sub": "alice", "channel": "chat:$board"}, "not-the-secret", "HS256")
        assert await subscribe_outcome(alice_third, 8, "chat:$board", forged) == ("error", 103)
        assert await subscribe_outcome(alice_third, 9, "chat:$board", own) == ("subscribed", None)
        for ws in (alice, alice_again, alice_third):
            await ws.close()


async def test_ip_deny_and_allow_lists(start_worker: StartWorker) -> None:
    denied = start_worker({"RESONANCE_IP_DENY": '["127.0.0.0/8"]'}, name="deny")
    assert await connect_outcome(denied, denied.token("x")) == ("refused", 403)
    not_allowed = start_worker({"RESONANCE_IP_ALLOW": '["192.0.2.0/24"]'}, name="allow-other")
    assert await connect_outcome(not_allowed, not_allowed.token("x")) == ("refused", 403)
    allowed = start_worker(
        {"RESONANCE_IP_ALLOW": '["127.0.0.1/32"]', "RESONANCE_IP_DENY": '["127.0.0.2/32"]'}, name="allow"
    )
    assert (await connect_outcome(allowed, allowed.token("x")))[0] == "connected"
    assert any(r.get("msg") == "connection refused by IP policy" for r in denied.log_records())


async def test_forwarded_for_is_believed_only_from_trusted_proxies(start_worker: StartWorker) -> None:
    # 127.0.0.1 is not a trusted proxy here: a client cannot claim an allowed address.
    spoofable = start_worker(
        {
            "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
            "RESONANCE_TRUSTED_PROXIES": '["10.0.0.0/8"]',
            "RESONANCE_IP_DENY": '["127.0.0.0/8"]',
        },
        name="untrusted-peer",
    )
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(spoofable.ws_url, headers={"X-Forwarded-For": "198.51.100.1"})
        assert refused.value.status == 403
    # From a trusted proxy, the client's own entries on the left cannot hide its address.
    proxied = start_worker(
        {
            "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
            "RESONANCE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "RESONANCE_IP_DENY": '["203.0.113.0/24"]',
        },
        name="trusted-peer",
    )
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(proxied.ws_url, headers={"X-Forwarded-For": "192.0.2.1, 203.0.113.5"})
        assert refused.value.status == 403
        ws = await http.ws_connect(proxied.ws_url, headers={"X-Forwarded-For": "203.0.113.5, 192.0.2.1"})
        await ws.close()


def test_client_ip_header_without_trusted_proxies_is_refused_at_start() -> None:
    with pytest.raises(pydantic.ValidationError, match="trusted_proxies"):
        WorkerSettings(client_ip_header="X-Forwarded-For")
    with pytest.raises(pydantic.ValidationError, match="not an IP network"):
        WorkerSettings(ip_deny=["300.0.0.0/8"])


async def test_audit_log_records_server_api_and_admin_actions(start_worker: StartWorker) -> None:
    worker = start_worker({"RESONANCE_DEV_MODE": "true"}, name="audited")
    assert worker.api("publish", {"channel": "chat:audit", "data": {"secret-payload": 1}})[0] == 200
    assert worker.api("disconnect", {"user": "eve", "code": 3503})[0] == 200
    assert worker.api("publish", {"channel": "chat:audit", "data": 1}, key="wrong-key")[0] == 401
    assert worker.api("no_such_method", {})[0] == 404
    assert worker.http("POST", "/token", {"user": "dev"})[0] == 200
    audit = [r for r in worker.log_records() if r.get("logger") == "resonance.audit"]
    summary = [(r["action"], r["status"], r.get("channel"), r.get("user")) for r in audit]
    assert summary == [
        ("api.publish", 200, "chat:audit", None),
        ("api.disconnect", 200, None, "eve"),
        ("api.publish", 401, None, None),
        ("api.no_such_method", 404, None, None),
        ("admin.token", 200, None, None),
    ]
    assert all(r["remote"] == "127.0.0.1" and r["audit"] is True for r in audit)
    text = worker.log()
    assert "secret-payload" not in text and API_KEY not in text and "wrong-key" not in text


async def tenant_session(worker: WorkerProcess, tenant: str, http: aiohttp.ClientSession) -> Any:
    token = jwt.encode({"sub": "alice", "tenant": tenant, "exp": int(time.time()) + 600}, JWT_SECRET, "HS256")
    ws = await http.ws_connect(worker.ws_url)
    await ws.send_str(json.dumps({"id": 1, "connect": {"token": token}}))
    reply = json.loads((await ws.receive(timeout=10)).data.split("\n")[0])
    assert f"personal:{tenant}/#alice" in reply["connect"]["subs"]
    return ws


async def test_tenants_are_isolated_even_for_the_same_user_id(start_worker: StartWorker) -> None:
    worker = start_worker({"RESONANCE_TENANT_ISOLATION": "true"}, name="tenants")
    async with aiohttp.ClientSession() as http:
        acme = await tenant_session(worker, "acme", http)
        globex = await tenant_session(worker, "globex", http)
        assert await subscribe_outcome(acme, 2, "chat:globex/lobby") == ("error", 103)
        assert await subscribe_outcome(acme, 3, "chat:lobby") == ("error", 103)
        assert await subscribe_outcome(acme, 4, "personal:globex/#alice") == ("error", 103)
        assert await subscribe_outcome(acme, 5, "chat:acme/lobby") == ("subscribed", None)
        # The back end writes to acme's alice; globex's alice (same id) hears nothing.
        status, _ = worker.api("publish", {"channel": "personal:acme/#alice", "data": {"for": "acme"}})
        assert status == 200
        push = json.loads((await acme.receive(timeout=10)).data)
        assert push["push"]["channel"] == "personal:acme/#alice"
        with pytest.raises(TimeoutError):
            await globex.receive(timeout=1)
        await acme.close()
        await globex.close()


async def flood(worker: WorkerProcess, http: aiohttp.ClientSession) -> tuple[list[int], int | None]:
    """One attacker (one address): 150 connections of garbage, then one signed-in connection that
    sends unknown RPCs as fast as it can. The close codes of the garbage, and of the signed-in one."""
    garbage_closes = []
    for n in range(150):
        async with http.ws_connect(worker.ws_url) as ws:
            await ws.send_str(f"}}{{ not json {n}")
            message = await ws.receive(timeout=10)
            garbage_closes.append(message.data if message.type is aiohttp.WSMsgType.CLOSE else -1)
    ws = await http.ws_connect(worker.ws_url)
    async with ws:
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": worker.token("mallory")}}))
        assert "connect" in json.loads((await ws.receive(timeout=10)).data)
        for n in range(2, 90):
            await ws.send_str(json.dumps({"id": n, "rpc": {"method": "no.such.method"}}))
        while (message := await ws.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
            pass
        return garbage_closes, ws.close_code


async def test_one_attackers_flood_sheds_nobody_and_cuts_off_the_attacker(
    start_worker: StartWorker, clients: Any
) -> None:
    """Issue 9: one client's garbage must not make the thyroid shed new connections for everyone."""
    worker = start_worker({"RESONANCE_LIVING__THYROID_EVALUATE_SECONDS": "0.2"}, name="flooded")
    from tests.worker.transport.conftest import Clients

    assert isinstance(clients, Clients)
    bystander, _ = await clients.connected(worker.ws_url, worker.token("bystander"))
    async with aiohttp.ClientSession() as http:
        garbage_closes, attacker_close = await flood(worker, http)
    assert set(garbage_closes) == {3501}
    assert attacker_close == 3509  # too many errors: this connection, and only it, was cut off
    code, thyroid = await asyncio.to_thread(worker.http, "GET", "/thyroid/status")
    assert code == 200 and thyroid["state"] == "calm"
    assert thyroid["pain"] <= 2.5 + 1e-6  # one address: at most a quarter of the threshold of 10
    # A well-behaved client connecting after the flood (from the same loopback address) is accepted.
    newcomer, _ = await clients.connected(worker.ws_url, worker.token("newcomer"))
    assert (await newcomer.rpc("echo", "hello")).data == "hello"
    assert (await bystander.rpc("echo", "still here")).data == "still here"
    metrics = await asyncio.to_thread(worker.metrics)
    assert re.search(r"^resonance_thyroid_cut_offs_total 1\.0", metrics, re.M)
    refused = re.search(r"^resonance_thyroid_pain_refused_total (\S+)", metrics, re.M)
    # Most of the flood's pain was refused by the per-address cap: more than the 150 garbage connections'
    # worth (the exact sum depends on how much the cap refilled by decay while a loaded machine sent it;
    # it was 199.5-203 between runs).
    assert refused is not None and float(refused.group(1)) > 150
    assert any(r.get("msg") == "client cut off: its errors flood the thyroid" for r in worker.log_records())


async def test_without_the_budget_the_same_flood_sheds_everyone(start_worker: StartWorker) -> None:
    """The control: with the per-source cap effectively off, the flood overloads the worker and
    new connections are refused with 503 - what the budget prevents."""
    worker = start_worker(
        {
            "RESONANCE_LIVING__THYROID_EVALUATE_SECONDS": "0.2",
            "RESONANCE_LIVING__THYROID_IDENTITY_SHARE": "1000",
        },
        name="unbudgeted",
    )
    refused = []
    async with aiohttp.ClientSession() as http:
        for n in range(150):  # the same garbage as above, until the worker sheds it
            try:
                async with http.ws_connect(worker.ws_url) as ws:
                    await ws.send_str(f"}}{{ not json {n}")
                    await ws.receive(timeout=10)
            except aiohttp.WSServerHandshakeError as exc:
                refused.append(exc.status)
    assert refused and set(refused) == {503}  # everyone's new connections, not just the attacker's
    _, thyroid = await asyncio.to_thread(worker.http, "GET", "/thyroid/status")
    assert thyroid["state"] == "overloaded"
