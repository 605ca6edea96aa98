"""A real Prometheus (built from the Go module proxy by e2e/cluster/build-binaries) on a free loopback
port, with the scrape configs a test gives it, and its HTTP API (query, targets, reload).

    prometheus = Prometheus(workdir, scrape_configs).start()
    prometheus.wait_for('count(up == 1)', lambda v: v == 3)
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.processes import ServiceProcess, free_port

BIN = (
    Path(os.environ.get("RESONANCE_CACHE", Path.home() / ".cache" / "resonance-liminal")) / "bin" / "current"
)
# Loopback only: no proxy between the test and Prometheus.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PrometheusError(RuntimeError):
    """The API answered with an error, or the wait ran out."""


class Prometheus:
    def __init__(
        self, workdir: Path, scrape_configs: list[dict[str, Any]], *, scrape_interval: str = "1s"
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.scrape_configs = scrape_configs
        self.scrape_interval = scrape_interval
        binary = BIN / "prometheus"
        if not binary.exists():
            raise RuntimeError(f"no {binary}: run `make binaries` (e2e/cluster/build-binaries prometheus)")
        self.config = workdir / "prometheus.yml"
        self.process = ServiceProcess(
            f"prometheus:{self.port}",
            [
                str(binary),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            log_path=workdir / "prometheus.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": self.scrape_configs,
        }
        self.config.write_text(json.dumps(config, indent=2))

    def start(self, timeout: float = 60.0) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self.process.start()
        self.process.wait_until(self._ready, timeout=timeout, what="/-/ready")
        return self

    def stop(self) -> None:
        self.process.stop()

    def reload(self, scrape_configs: list[dict[str, Any]]) -> None:
        """Replace the scrape configs (POST /-/reload)."""
        self.scrape_configs = scrape_configs
        self._write_config()
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with _DIRECT.open(request, timeout=10) as response:
            if response.status != 200:
                raise PrometheusError(f"reload answered {response.status}")

    def _ready(self) -> bool:
        try:
            with _DIRECT.open(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with _DIRECT.open(url, timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise PrometheusError(f"{path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) per series of the vector (a scalar is one unlabelled one)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def targets(self) -> list[dict[str, Any]]:
        """The active targets (labels, scrapeUrl, health, lastError)."""
        return list(self.api("targets", state="active")["activeTargets"])

    def wait_for(
        self, expr: str, done: Callable[[list[tuple[dict[str, str], float]]], bool], *, timeout: float = 60.0
    ) -> list[tuple[dict[str, str], float]]:
        """Query ``expr`` until ``done(result)`` holds; a time out shows the last result and the targets."""
        deadline = time.monotonic() + timeout
        result: list[tuple[dict[str, str], float]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if done(result):
                return result
            time.sleep(0.5)
        targets = [(t["labels"].get("pod"), t["health"], t.get("lastError")) for t in self.targets()]
        raise PrometheusError(f"{expr}: {result} after {timeout:.0f} s; targets {targets}")
