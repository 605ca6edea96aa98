"""The ingress harness: Ingress objects become the nginx.conf ingress-nginx would write (pure checks), and a
real nginx in front of real workers carries WebSockets, the client address as ingress-nginx forwards it,
its timeouts and its body limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness.ingress_nginx import (
    ControllerConfig,
    IngressError,
    endpoint_slices_from_pods,
    ingress_manifest,
    render,
    routes_from_objects,
)
from tests.harness.nginx import NginxError, NginxProxy
from tests.harness.worker import WorkerProcess

HOST = "realtime.example.test"
WEBSOCKET_ANNOTATIONS = {
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
    "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
    "nginx.ingress.kubernetes.io/proxy-http-version": "1.1",
    "nginx.ingress.kubernetes.io/proxy-buffering": "off",
}


def ingress(
    annotations: dict[str, str] | None = None, *, path: str = "/", path_type: str = "Prefix"
) -> dict[str, Any]:
    body = ingress_manifest(
        "full", HOST, "full-worker", annotations=annotations, path=path, path_type=path_type
    )
    body["metadata"]["namespace"] = "ns"
    return body


def service(name: str = "full-worker") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }


def endpoint_slice(*addresses: tuple[str, int, bool], port: int = 8000) -> dict[str, Any]:
    return {
        "metadata": {"name": "full-worker-abc", "labels": {"kubernetes.io/service-name": "full-worker"}},
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip, _, ready in addresses],
    }


def conf(
    annotations: dict[str, str] | None = None,
    config: ControllerConfig | None = None,
    slices: list[dict[str, Any]] | None = None,
) -> str:
    config = config or ControllerConfig()
    routes = routes_from_objects(
        ingress(annotations),
        {"full-worker": service()},
        {"full-worker": slices if slices is not None else [endpoint_slice(("127.9.0.2", 8000, True))]},
        config,
    )
    return render(routes, config, listen="127.0.0.1:18080", prefix=Path("/tmp/x"))


# -- pure: what the translation writes --------------------------------------------------------------------


def test_websocket_annotations_become_the_location_settings() -> None:
    text = conf({**WEBSOCKET_ANNOTATIONS, "nginx.ingress.kubernetes.io/proxy-body-size": "64k"})
    for line in (
        "proxy_read_timeout 3600s;",
        "proxy_send_timeout 3600s;",
        "proxy_http_version 1.1;",
        "proxy_buffering off;",
        "client_max_body_size 64k;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_pass http://ns-full-worker-http;",
    ):
        assert line in text
    assert "server 127.9.0.2:8000 max_fails=0;" in text
    # Upstream keep-alive is on (320), so an absent Upgrade header keeps the connection reusable.
    assert "keepalive 320;" in text
    assert "'' '';" in text


def test_without_annotations_the_controller_defaults_apply() -> None:
    text = conf()
    assert "proxy_read_timeout 60s;" in text
    assert "proxy_send_timeout 60s;" in text
    assert "proxy_connect_timeout 5s;" in text
    assert "client_max_body_size 1m;" in text
    assert "proxy_buffering off;" in text
    assert "proxy_request_buffering on;" in text


def test_forwarded_for_is_the_peer_by_default_and_appended_only_when_asked() -> None:
    default = conf()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in default
    assert "proxy_set_header X-Original-Forwarded-For $http_x_forwarded_for;" in default
    assert "real_ip_header" not in default
    full = conf(
        config=ControllerConfig.from_configmap(
            {
                "use-forwarded-headers": "true",
                "compute-full-forwarded-for": "true",
                "proxy-real-ip-cidr": "10.0.0.0/8, 192.168.0.0/16",
            }
        )
    )
    assert "proxy_set_header X-Forwarded-For $full_x_forwarded_for;" in full
    assert 'default "$http_x_forwarded_for, $realip_remote_addr";' in full
    assert "real_ip_header X-Forwarded-For;" in full
    assert "real_ip_recursive on;" in full
    assert "set_real_ip_from 10.0.0.0/8;" in full
    assert "set_real_ip_from 192.168.0.0/16;" in full
    proxied = conf(config=ControllerConfig.from_configmap({"use-proxy-protocol": "true"}))
    assert "real_ip_header proxy_protocol;" in proxied
    assert "listen 127.0.0.1:18080 proxy_protocol;" in proxied


def test_endpoints_are_the_ready_addresses_at_the_named_port() -> None:
    text = conf(
        slices=[endpoint_slice(("127.9.0.2", 0, True), ("127.9.0.3", 0, False), ("127.9.0.4", 0, True))]
    )
    assert "server 127.9.0.2:8000" in text
    assert "server 127.9.0.4:8000" in text
    assert "127.9.0.3" not in text
    empty = conf(slices=[])
    assert "return 503;" in empty
    assert "upstream ns-full-worker-http" not in empty


def test_prefix_paths_match_the_path_and_below_it() -> None:
    routes = routes_from_objects(
        ingress(path="/rt/"),
        {"full-worker": service()},
        {"full-worker": [endpoint_slice(("127.9.0.2", 0, True))]},
    )
    text = render(routes, ControllerConfig(), listen="127.0.0.1:1", prefix=Path("/tmp/x"))
    assert "location = /rt {" in text
    assert "location /rt/ {" in text
    exact = routes_from_objects(
        ingress(path="/rt", path_type="Exact"), {"full-worker": service()}, {"full-worker": []}
    )
    assert "location = /rt {" in render(exact, ControllerConfig(), listen="127.0.0.1:1", prefix=Path("/x"))


@pytest.mark.parametrize(
    ("annotations", "configmap", "message"),
    [
        ({"nginx.ingress.kubernetes.io/canary": "true"}, {}, "canary"),
        ({"nginx.ingress.kubernetes.io/proxy-body-size": "lots"}, {}, "proxy-body-size"),
        ({"nginx.ingress.kubernetes.io/proxy-read-timeout": "soon"}, {}, "proxy-read-timeout"),
        ({"nginx.ingress.kubernetes.io/proxy-http-version": "2"}, {}, "proxy-http-version"),
        ({}, {"enable-brotli": "true"}, "enable-brotli"),
        ({}, {"use-forwarded-headers": "maybe"}, "use-forwarded-headers"),
    ],
)
def test_what_cannot_be_translated_is_refused_by_name(
    annotations: dict[str, str], configmap: dict[str, str], message: str
) -> None:
    with pytest.raises(IngressError, match=message):
        conf(annotations, ControllerConfig.from_configmap(configmap))


def test_a_missing_backend_service_is_refused() -> None:
    with pytest.raises(IngressError, match="full-worker does not exist"):
        routes_from_objects(ingress(), {}, {})


def test_nginx_accepts_what_the_translation_writes(tmp_path: Path) -> None:
    proxy = NginxProxy(tmp_path)
    config = ControllerConfig.from_configmap(
        {"use-forwarded-headers": "true", "compute-full-forwarded-for": "true"}
    )
    routes = routes_from_objects(
        ingress(WEBSOCKET_ANNOTATIONS),
        {"full-worker": service()},
        {"full-worker": [endpoint_slice(("127.9.0.2", 0, True))]},
        config,
    )
    text = render(routes, config, listen=proxy.listen, prefix=tmp_path, run_as_root=proxy.run_as_root)
    proxy.start(text)
    try:
        with pytest.raises(NginxError, match="unknown directive"):
            proxy.reload(text.replace("server_tokens off;", "server_tokens off; not_a_directive on;"))
        assert proxy.reloads == 0
        assert proxy.process.alive()
    finally:
        assert proxy.stop() == 0


# -- live: real nginx in front of real workers ------------------------------------------------------------

LIMIT_PER_IP = 2


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerProcess]]:
    """Two workers that believe X-Forwarded-For from 127.0.0.1 (where nginx connects from) only."""
    workdir = tmp_path_factory.mktemp("ingress-workers")
    env = {
        "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
        "RESONANCE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP": str(LIMIT_PER_IP),
        "RESONANCE_PING_INTERVAL_SECONDS": "0.5",
        "RESONANCE_PONG_TIMEOUT_SECONDS": "5",
    }
    started = [WorkerProcess(workdir, env, name=f"w{i}") for i in range(2)]
    try:
        for worker in started:  # side by side: a worker's start-up is mostly imports
            worker.process.start()
        for worker in started:
            worker.process.wait_until(
                lambda w=worker: w.http("GET", "/ready")[0] == 200, timeout=60, what="/ready"
            )
        yield started
    finally:
        for worker in started:
            worker.stop()


def live_conf(proxy: NginxProxy, workers: list[WorkerProcess], annotations: dict[str, str]) -> str:
    config = ControllerConfig()
    slices = [
        {
            "ports": [{"name": "http", "port": w.port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        }
        for w in workers
    ]
    routes = routes_from_objects(
        ingress(annotations), {"full-worker": service()}, {"full-worker": slices}, config
    )
    return render(routes, config, listen=proxy.listen, prefix=proxy.workdir, run_as_root=proxy.run_as_root)


@pytest.fixture
def proxy(tmp_path: Path, workers: list[WorkerProcess]) -> Iterator[NginxProxy]:
    running = NginxProxy(tmp_path / "nginx")
    running.start(
        live_conf(
            running, workers, {**WEBSOCKET_ANNOTATIONS, "nginx.ingress.kubernetes.io/proxy-body-size": "2k"}
        )
    )
    try:
        yield running
    finally:
        running.stop()


async def open_client(
    proxy: NginxProxy, worker: WorkerProcess, source: str, user: str, headers: dict[str, str] | None = None
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse, dict[str, Any] | int]:
    """A WebSocket through the proxy from ``source``; the connect reply, or the close code if refused."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
    ws = await session.ws_connect(proxy.ws_url(), headers={"Host": HOST, **(headers or {})}, autoping=True)
    await ws.send_str(json.dumps({"id": 1, "connect": {"token": worker.token(user)}}))
    message = await ws.receive(timeout=10)
    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
        return session, ws, int(ws.close_code or 0)
    return session, ws, json.loads(message.data.splitlines()[0])


async def test_websockets_pass_and_per_address_limits_count_the_client_not_the_proxy(
    proxy: NginxProxy, workers: list[WorkerProcess]
) -> None:
    opened: list[tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]] = []
    try:
        # Round robin over two workers: 2 x LIMIT_PER_IP from one address fit, one more is refused
        # by whichever worker it lands on... unless the worker counted nginx (127.0.0.1) for everyone.
        outcomes = []
        for n in range(2 * LIMIT_PER_IP + 1):
            session, ws, outcome = await open_client(proxy, workers[0], "127.0.0.7", f"a{n}")
            opened.append((session, ws))
            outcomes.append(outcome)
        accepted = [o for o in outcomes if isinstance(o, dict) and "connect" in o]
        assert len(accepted) == 2 * LIMIT_PER_IP, outcomes
        assert [o for o in outcomes if not isinstance(o, dict)] == [3504]
        # Another address is not affected, and a forged X-Forwarded-For naming the full address is
        # replaced by nginx with the real peer: accepted too.
        for source, headers in (("127.0.0.8", {}), ("127.0.0.9", {"X-Forwarded-For": "127.0.0.7"})):
            session, ws, outcome = await open_client(proxy, workers[0], source, "b", headers)
            opened.append((session, ws))
            assert isinstance(outcome, dict) and "connect" in outcome, outcome
    finally:
        for session, ws in opened:
            await ws.close()
            await session.close()


async def test_idle_websocket_outlives_a_read_timeout_above_the_ping_interval(
    proxy: NginxProxy, workers: list[WorkerProcess]
) -> None:
    # 2 s read timeout: the worker's 0.5 s pings keep the upstream busy, so the socket survives 3 s
    # of client silence.
    proxy.reload(
        live_conf(
            proxy, workers, {**WEBSOCKET_ANNOTATIONS, "nginx.ingress.kubernetes.io/proxy-read-timeout": "2"}
        )
    )
    await asyncio.sleep(0.5)
    session, ws, outcome = await open_client(proxy, workers[0], "127.0.0.10", "idle")
    try:
        assert isinstance(outcome, dict) and "connect" in outcome
        pings = 0
        until = asyncio.get_running_loop().time() + 3.0
        while (left := until - asyncio.get_running_loop().time()) > 0:
            with contextlib.suppress(TimeoutError):
                message = await ws.receive(timeout=left)
                assert message.type is aiohttp.WSMsgType.TEXT, message
                pings += message.data.count("{}")
        assert not ws.closed
        assert pings >= 3
    finally:
        await ws.close()
        await session.close()


def test_request_bodies_over_the_body_size_are_refused_by_the_proxy(proxy: NginxProxy) -> None:
    request = urllib.request.Request(
        f"http://{proxy.listen}/api/publish",
        data=b"x" * 4096,
        headers={"Host": HOST, "Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(request, timeout=5)
    assert refused.value.code == 413
    unknown = urllib.request.Request(f"http://{proxy.listen}/health", headers={"Host": "other.example"})
    with pytest.raises(urllib.error.HTTPError) as missing:
        opener.open(unknown, timeout=5)
    assert missing.value.code == 404


def pod(name: str, ip: str, *, ready: bool = True, deleting: bool = False, app: str = "w") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {"app": app}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": metadata,
        "spec": {"containers": [{"name": "worker", "ports": [{"name": "http", "containerPort": 8000}]}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_endpoint_slices_are_computed_from_pods_as_the_controller_would() -> None:
    svc = {**service(), "spec": {**service()["spec"], "selector": {"app": "w"}}}
    pods = [
        pod("a", "127.9.0.2"),
        pod("b", "127.9.0.3", ready=False),
        pod("c", "127.9.0.4", deleting=True),
        pod("d", "127.9.0.5", app="other"),
    ]
    slices = endpoint_slices_from_pods(svc, pods)
    assert [s["ports"] for s in slices] == [[{"name": "http", "port": 8000, "protocol": "TCP"}]]
    conditions = {e["addresses"][0]: e["conditions"] for e in slices[0]["endpoints"]}
    assert conditions == {
        "127.9.0.2": {"ready": True, "terminating": False},
        "127.9.0.3": {"ready": False, "terminating": False},
        "127.9.0.4": {"ready": False, "terminating": True},
    }
    routes = routes_from_objects(ingress(), {"full-worker": svc}, {"full-worker": slices})
    assert routes[0].endpoints == (("127.9.0.2", 8000),)
    # A Service without a selector selects nothing (its endpoints would be managed by hand).
    assert endpoint_slices_from_pods(service(), pods) == []
