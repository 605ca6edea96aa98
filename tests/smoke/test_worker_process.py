"""What `make run` starts: the `resonance-worker` console script on the
in-memory engine answers /health, /ready and /metrics and prints a working
demo token."""

from __future__ import annotations

import re
import shutil
import sys
import urllib.request
from pathlib import Path

import jwt
import pytest

from tests.harness.processes import ServiceProcess, free_port


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


def test_console_script_serves_probes_and_prints_demo_token(tmp_path: Path) -> None:
    script = shutil.which("resonance-worker", path=str(Path(sys.executable).parent))
    assert script is not None, "the resonance-worker console script is not installed"
    port = free_port()
    secret = "smoke-test-secret-of-sufficient-length"
    worker = ServiceProcess(
        "worker",
        [script],
        log_path=tmp_path / "worker.log",
        env={
            "RESONANCE_PORT": str(port),
            "RESONANCE_JWT_SECRET": secret,
            "RESONANCE_LOG_JSON": "false",
            "RESONANCE_DEV_MODE": "true",  # a demo token for a configured secret only in dev mode
        },
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        worker.wait_until(lambda: "demo token" in worker.log_tail(), timeout=30, what="banner")
        assert _get(base + "/health")[0] == 200
        status, _, body = _get(base + "/ready")
        assert status == 200
        assert '"memory"' in body
        status, content_type, text = _get(base + "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert "resonance_connections" in text

        banner = worker.log_tail()
        assert f"ws://127.0.0.1:{port}/connection/websocket" in banner
        token = re.search(r"demo token[^:]*: (\S+)", banner)
        assert token is not None
        claims = jwt.decode(token.group(1), secret, algorithms=["HS256"])
        assert claims["sub"] == "demo"
        assert claims["exp"] > claims["iat"]
        # The demo user consents to every kind of data, so the demo keeps what it shows.
        assert sorted(claims["consent"]) == ["biometrics", "emotions", "graph"]
        # The console line opens the console signed in as the demo user (the fragment stays in the browser).
        assert f"console:   http://127.0.0.1:{port}/#token={token.group(1)}" in banner
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()


def test_free_ports_are_outside_the_ephemeral_range() -> None:
    """Servers listen below the range outgoing connections draw source ports from."""
    from tests.harness.processes import LISTEN_PORTS

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(port in LISTEN_PORTS and port < low for port in ports), ports
    assert len(ports) > 1  # chosen at random, so concurrent runs rarely pick the same one


def test_two_xdist_workers_draw_ports_from_disjoint_shares() -> None:
    """Under `make test`'s two pytest processes, a port one worker chose but has not bound yet can never be
    the other's choice: each draws from its own slice of the range (tests/harness/processes.py)."""
    from tests.harness.processes import LISTEN_PORTS, worker_ports

    shares = [
        worker_ports(LISTEN_PORTS, {"PYTEST_XDIST_WORKER": f"gw{i}", "PYTEST_XDIST_WORKER_COUNT": "2"})
        for i in range(2)
    ]
    assert not set(shares[0]) & set(shares[1])
    assert all(len(share) > 5000 and set(share) <= set(LISTEN_PORTS) for share in shares)
    assert worker_ports(LISTEN_PORTS, {}) == LISTEN_PORTS  # a plain pytest run has the whole range


def test_e2e_beside_tests_draws_ports_from_its_own_part() -> None:
    """`make test` runs e2e/ beside tests/ (scripts/test-all): RESONANCE_TEST_PORTS gives each run its own
    part of the range, which tests/ then splits between its two xdist workers."""
    from tests.harness.processes import LISTEN_PORTS, worker_ports

    e2e = worker_ports(None, {"RESONANCE_TEST_PORTS": "30000-32767"})
    xdist = {"RESONANCE_TEST_PORTS": "20000-29999", "PYTEST_XDIST_WORKER_COUNT": "2"}
    tests = [worker_ports(None, {**xdist, "PYTEST_XDIST_WORKER": f"gw{i}"}) for i in range(2)]
    assert e2e == range(30000, 32768)
    assert not set(e2e) & set(tests[0]) and not set(e2e) & set(tests[1]) and not set(tests[0]) & set(tests[1])
    assert all(set(share) <= set(LISTEN_PORTS) for share in [e2e, *tests])
    with pytest.raises(ValueError, match="not a part of"):
        worker_ports(None, {"RESONANCE_TEST_PORTS": "1000-2000"})


def test_a_port_is_handed_out_once_until_bound() -> None:
    """Two services started one after the other, before either binds, get different ports."""
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
