"""A loopback ingress-nginx: Debian's nginx in front of the workers ``e2e/podrunner.py`` runs at kwok Pods.

``LoopbackIngress(namespace, ingress_name)`` does what the ingress-nginx controller does for one Ingress:
it reads the Ingress, the Services it names and their Pods from the API, writes the nginx.conf
ingress-nginx would (``tests/harness/ingress_nginx.py``), starts nginx on a free loopback port and reloads
it whenever the result changes - a Pod that goes away leaves the upstream, a new one joins it. The
upstream addresses are the Pods' own (``127.N.x.y``), where the podrunner's worker processes listen, so
a client reaches a real worker through a real proxy configured from the Ingress the operator rendered.

Clients connect to ``connect_to`` (``address:port``) and send the Ingress host in ``Host``, as they would
through DNS; ``ws_url`` is the URL with that host. Bounded: polling runs in a background thread and
leaving the context stops nginx::

    with LoopbackKubelet(ns, selector, env_overrides=...) as kubelet, LoopbackIngress(ns, "full") as ingress:
        kubelet.wait_endpoints(3)
        ingress.wait_upstreams(3)
        target = Target(ws_urls=(ingress.ws_url,), connect_to=ingress.connect_to, ...)
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from e2e.kube import KubectlError, kubectl_json
from tests.harness.ingress_nginx import (
    ControllerConfig,
    IngressError,
    Route,
    endpoint_slices_from_pods,
    render,
    routes_from_objects,
)
from tests.harness.nginx import NginxError, NginxProxy


class LoopbackIngress:
    """nginx for ``ingress_name`` in ``namespace``, configured as ingress-nginx would; a context manager."""

    def __init__(
        self,
        namespace: str,
        ingress_name: str,
        *,
        configmap: dict[str, str] | None = None,
        workdir: Path | None = None,
        poll_seconds: float = 1.0,
        kubeconfig: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.ingress_name = ingress_name
        self.config = ControllerConfig.from_configmap(configmap or {})
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="loopback-ingress-"))
        self.poll_seconds = poll_seconds
        self.kubeconfig = kubeconfig
        self.proxy = NginxProxy(self.workdir)
        self.errors: list[str] = []
        self.routes: list[Route] = []
        self.host = ""
        self._text = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the context -------------------------------------------------------------------------------------

    def __enter__(self) -> LoopbackIngress:
        self._thread = threading.Thread(target=self._loop, name="loopback-ingress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.proxy.stop()

    # -- what tests read ---------------------------------------------------------------------------------

    @property
    def connect_to(self) -> str:
        """``address:port`` nginx listens on (what DNS would give for the Ingress host)."""
        return self.proxy.listen

    @property
    def ws_url(self) -> str:
        """The WebSocket URL a client uses: the Ingress host, the listening port, the worker's path."""
        return f"ws://{self.host}:{self.proxy.port}/connection/websocket"

    def upstreams(self) -> list[tuple[str, int]]:
        """The worker addresses nginx proxies to now (every route's endpoints)."""
        with self._lock:
            return sorted({endpoint for route in self.routes for endpoint in route.endpoints})

    def wait_upstreams(self, count: int, *, timeout: float = 60.0) -> list[tuple[str, int]]:
        """Block until nginx serves exactly ``count`` upstream addresses; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.upstreams()
            if len(found) == count and self.proxy.process.alive():
                return found
            time.sleep(0.1)
        raise AssertionError(
            f"wanted {count} upstreams, have {self.upstreams()}; errors: {self.errors[-5:]};"
            f" nginx: {self.proxy.process.log_tail(10)}"
        )

    async def wait_upstreams_async(self, count: int, *, timeout: float = 60.0) -> list[tuple[str, int]]:
        return await asyncio.to_thread(self.wait_upstreams, count, timeout=timeout)

    # -- the loop --------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except (KubectlError, IngressError, NginxError, OSError, ValueError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.poll_seconds)

    def _objects(self) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]], list[dict[str, Any]]]:
        # One list call for the three kinds: kubectl is the expensive part of a poll.
        listing = kubectl_json(
            "get", "ingresses,services,pods", "-n", self.namespace, kubeconfig=self.kubeconfig
        )
        ingress, services, pods = None, {}, []
        for item in listing.get("items", []):
            kind = item.get("kind")
            if kind == "Ingress" and item["metadata"]["name"] == self.ingress_name:
                ingress = item
            elif kind == "Service":
                services[item["metadata"]["name"]] = item
            elif kind == "Pod":
                pods.append(item)
        return ingress, services, pods

    def sync(self) -> None:
        """One pass: read the objects, render, start or reload nginx when the configuration changed."""
        ingress, services, pods = self._objects()
        if ingress is None:
            return  # not created yet (or deleted): keep serving what nginx has
        slices = {name: endpoint_slices_from_pods(service, pods) for name, service in services.items()}
        routes = routes_from_objects(ingress, services, slices, self.config)
        text = render(
            routes,
            self.config,
            listen=self.proxy.listen,
            prefix=self.workdir,
            run_as_root=self.proxy.run_as_root,
        )
        if text == self._text:
            return
        if self._text:
            self.proxy.reload(text)
        else:
            self.proxy.start(text)
        self._text = text
        with self._lock:
            self.routes = routes
            self.host = routes[0].host if routes else ""
