"""A real worker process (``python -m resonance_worker``) on a free port."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from resonance_worker.tokens import mint_connection_token, mint_subscription_token

from tests.harness.processes import ServiceProcess, free_port

JWT_SECRET = "integration-test-secret-long-enough-for-hs256"
API_KEY = "integration-test-api-key"


class WorkerProcess:
    """One worker with its settings in the environment; ``stop`` sends SIGTERM."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        *,
        name: str = "worker",
        python: str = sys.executable,
    ) -> None:
        self.port = free_port()
        self.name = name
        self.env = {
            "RESONANCE_HOST": "127.0.0.1",
            "RESONANCE_PORT": str(self.port),
            "RESONANCE_JWT_SECRET": JWT_SECRET,
            "RESONANCE_API_KEY": API_KEY,
            "RESONANCE_LOG_JSON": "true",
            "RESONANCE_LOG_LEVEL": "INFO",
            "RESONANCE_NODE_NAME": name,
            "RESONANCE_SHUTDOWN_DRAIN_SECONDS": "0.5",
            # Every test client comes from 127.0.0.1.
            "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP": "1000",
            "RESONANCE_LIMITS__MAX_CONNECTIONS": "1000",
            # Tests of the living core store what they report; tests of consent turn this back on
            # (tests/worker/transport/test_data_rights.py). The product default is true.
            "RESONANCE_DATA__CONSENT_REQUIRED": "false",
            **(env or {}),
        }
        self.process = ServiceProcess(
            f"{name}:{self.port}",
            [python, "-m", "resonance_worker"],
            log_path=workdir / f"{name}-{self.port}.log",
            env=self.env,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    def start(self, timeout: float = 180.0) -> WorkerProcess:
        """Start and wait for ``/ready``. The deadline is for a worker that is alive but never gets ready: one
        that exits fails at once, and on two cores shared by two test processes (and whatever else runs)
        importing the worker under coverage has taken over 30 s."""
        self.process.start()
        self.process.wait_until(self.ready_and_warm, timeout=timeout, what="/ready")
        return self

    def ready_and_warm(self) -> bool:
        """``/ready`` answers 200 and the background biometrics warm-up is over (``warming``: the worker
        is ready, but a test's first ``bio.push`` would wait for SciPy's import, seconds under load,
        past the SDK's 5 s timeout; ``RESONANCE_LIVING__BIO_WARM_UP=false`` skips both)."""
        status, body = self.http("GET", "/ready")
        return status == 200 and not (isinstance(body, dict) and body.get("biometrics") == "warming")

    def stop(self) -> int | None:
        return self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def token(self, user: str = "alice", ttl: float = 3600.0, **claims: Any) -> str:
        return mint_connection_token(JWT_SECRET, sub=user, now=time.time(), ttl=ttl, **claims)

    def sub_token(self, user: str, channel: str, ttl: float = 3600.0) -> str:
        return mint_subscription_token(JWT_SECRET, sub=user, channel=channel, now=time.time(), ttl=ttl)

    def http(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except OSError:
            return 0, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def api(self, method: str, body: dict[str, Any], key: str | None = API_KEY) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"apikey {key}"
        return self.http("POST", f"/api/{method}", body, headers)

    def metrics(self) -> str:
        status, text = self.http("GET", "/metrics")
        assert status == 200
        return str(text)


async def api_call(worker: WorkerProcess, method: str, body: dict[str, Any]) -> tuple[int, Any]:
    """``worker.api`` off the event loop, so SDK clients keep running meanwhile."""
    import asyncio

    return await asyncio.to_thread(worker.api, method, body)
