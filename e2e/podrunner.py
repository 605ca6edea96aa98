"""A loopback kubelet: a real ``resonance-worker`` process for every kwok Pod.

kwok (the harness's fake kubelet) marks Pods Running and gives them IPs but runs
nothing. The harness's pod CIDR is a loopback ``127.N.0.0/16`` (N from the control
plane's work directory, so clusters side by side differ: ``pod_cidr`` in
``e2e/cluster/controlplane.py``), and Linux routes all of 127/8 to the loopback
interface, so a process on this machine can bind a Pod's own IP. ``LoopbackKubelet`` does what a kubelet would
for the worker container of the Pods matching a label selector:

* For each Running Pod with an IP (and no ``deletionTimestamp``) it starts
  ``resonance-worker`` (the console script beside this interpreter, i.e.
  ``.venv/bin/resonance-worker``) with the container's environment resolved
  through the API - ``envFrom`` (ConfigMaps, Secrets, with ``prefix``), then
  ``env``: ``value`` (with ``$(VAR)`` expansion), ``valueFrom.secretKeyRef``,
  ``configMapKeyRef`` and ``fieldRef`` (``metadata.name``, ``metadata.namespace``,
  ``metadata.uid``, ``metadata.labels['k']``, ``status.podIP``, ``spec.nodeName``)
  - then ``RESONANCE_HOST`` = the Pod IP and ``RESONANCE_PORT`` = the container
  port (named ``http``, else the first), then ``env_overrides`` last (in-cluster
  DNS names do not resolve here: override ``RESONANCE_REDIS_URL`` with a test
  Redis, or set ``RESONANCE_ENGINE=memory``); ``env_unset`` names variables to leave out (e.g. a
  Neo4j URI no test process can reach).
* When the Pod goes away (kwok deletes a Pod as soon as it has a
  ``deletionTimestamp``, so usually it simply vanishes) the process gets SIGTERM
  - the worker drains (``POST /drain`` plans are followed) - and SIGKILL once the
  Pod's ``terminationGracePeriodSeconds`` have passed.
* A process that exits while its Pod still runs is started again after a
  backoff (``restartPolicy: Always``). A new Pod that got the IP of an old one
  whose worker still drains there is started once that worker has exited.

* ``configMap`` volumes the container mounts are projected into the work directory the way
  the kubelet's atomic writer does (a ``..<stamp>`` directory, a ``..data`` symlink swapped to
  it, each key a symlink through ``..data``) and projected again when the ConfigMap changes
  (checked every poll; a real kubelet takes up to its sync period). As nothing can be mounted at
  the container's ``mountPath`` here, an environment value naming a path under a ``mountPath``
  is rewritten to the projected directory (``RESONANCE_FEATURES_FILE``).

What it does not do: it never writes Pod status, so readiness in the API stays
kwok's (always Ready); probes are not run. Only the container named
``container`` (default ``worker``) runs.

Bounded: leaving the context stops every process it started (SIGTERM, then
SIGKILL after ``stop_timeout`` seconds). Polling runs in a background thread,
so the same object works in sync and in async tests (the waits have ``async``
twins that run in a thread)::

    with LoopbackKubelet(ns, "app.kubernetes.io/component=worker",
                         env_overrides={"RESONANCE_ENGINE": "memory"}) as kubelet:
        endpoints = await kubelet.wait_endpoints_async(2, timeout=60)
        for ep in endpoints:
            print(ep.pod, ep.revision, ep.url("/health"))
        print(kubelet.log(endpoints[0].pod))

``endpoints()`` lists only Pods whose process answered ``/health``;
``processes()`` shows every process, ``finished()`` those that exited (Pod,
exit code), and ``env(pod)`` the environment a Pod's process got.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from e2e.kube import KubectlError, kubectl_json
from tests.harness.processes import ServiceProcess

REVISION_LABEL = "resonance.liminal.dev/revision"
DEFAULT_PORT = 8000
RESTART_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0)
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_LABEL_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


class EnvError(RuntimeError):
    """A Pod's environment cannot be resolved (a missing Secret or ConfigMap key)."""


@dataclass(frozen=True)
class Endpoint:
    """A Pod whose worker process answers ``/health``."""

    pod: str
    labels: dict[str, str]
    ip: str
    port: int

    @property
    def revision(self) -> str | None:
        return self.labels.get(REVISION_LABEL)

    def url(self, path: str = "") -> str:
        return f"http://{self.ip}:{self.port}{path}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.ip}:{self.port}/connection/websocket"


@dataclass
class PodProcess:
    """The worker process of one Pod (by UID: a Pod recreated with the same name is another one)."""

    pod: str
    uid: str
    labels: dict[str, str]
    ip: str
    port: int
    env: dict[str, str]
    grace_seconds: float
    process: ServiceProcess
    healthy: bool = False
    restarts: int = 0
    restart_at: float | None = None
    kill_at: float | None = None
    exit_code: int | None = None
    history: list[str] = field(default_factory=list)
    volumes: dict[Path, str] = field(default_factory=dict)
    """Projected ``configMap`` volumes: directory -> ConfigMap name."""

    @property
    def terminating(self) -> bool:
        return self.kill_at is not None


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion against the variables defined so far (``$$`` escapes)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, value)


class LoopbackKubelet:
    """Runs a real worker for each matching kwok Pod of ``namespace``; use as a context manager."""

    def __init__(
        self,
        namespace: str,
        selector: str,
        *,
        env_overrides: dict[str, str] | None = None,
        env_unset: tuple[str, ...] = (),
        container: str = "worker",
        workdir: Path | None = None,
        poll_seconds: float = 0.5,
        stop_timeout: float = 15.0,
        kubeconfig: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.selector = selector
        self.env_overrides = dict(env_overrides or {})
        self.env_unset = frozenset(env_unset)
        self.container = container
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="loopback-kubelet-"))
        self.poll_seconds = poll_seconds
        self.stop_timeout = stop_timeout
        self.kubeconfig = kubeconfig
        self.errors: list[str] = []
        self.waiting: set[str] = set()
        """Pods whose address is held by another process; started once it is free."""
        self._running: dict[str, PodProcess] = {}
        self._finished: list[PodProcess] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the context -------------------------------------------------------------------------------------

    def __enter__(self) -> LoopbackKubelet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="loopback-kubelet", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> LoopbackKubelet:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop polling and every process still running (SIGTERM, then SIGKILL)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            remaining = list(self._running.values())
            self._running.clear()
        # All at once (they drain in parallel), once each: a second SIGTERM cuts a worker's drain short.
        for pod in remaining:
            if not pod.terminating:
                pod.process.signal(signal.SIGTERM)
        until = time.monotonic() + self.stop_timeout
        for pod in remaining:
            proc = pod.process.proc
            if proc is not None:
                try:
                    proc.wait(timeout=max(0.1, until - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pod.process.kill()
                pod.exit_code = proc.returncode
            pod.history.append(f"stopped with the kubelet: exit {pod.exit_code}")
            with self._lock:
                self._finished.append(pod)

    # -- what tests read ---------------------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        """Pods whose process answered ``/health`` and is not terminating, by Pod name."""
        with self._lock:
            return sorted(
                (
                    Endpoint(p.pod, dict(p.labels), p.ip, p.port)
                    for p in self._running.values()
                    if p.healthy and not p.terminating and p.process.alive()
                ),
                key=lambda e: e.pod,
            )

    def processes(self) -> list[PodProcess]:
        with self._lock:
            return list(self._running.values())

    def finished(self) -> list[tuple[str, int | None]]:
        """(Pod, exit code) of every process that ended, in order."""
        with self._lock:
            return [(p.pod, p.exit_code) for p in self._finished]

    def env(self, pod: str) -> dict[str, str]:
        """The environment the Pod's (latest) process was started with, beyond the test's own."""
        for record in [*self._running.values(), *reversed(self._finished)]:
            if record.pod == pod:
                return dict(record.env)
        raise KeyError(pod)

    def log(self, pod: str) -> str:
        """The output of the Pod's process (all its restarts)."""
        path = self.workdir / f"{pod}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> dict[str, str]:
        return {path.stem: path.read_text(errors="replace") for path in sorted(self.workdir.glob("*.log"))}

    def wait_endpoints(self, count: int, *, timeout: float = 60.0) -> list[Endpoint]:
        """Block until exactly ``count`` endpoints answer; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.endpoints()
            if len(found) == count:
                return found
            time.sleep(0.1)
        raise AssertionError(
            f"wanted {count} endpoints, have {self.endpoints()}; processes:"
            f" {[(p.pod, p.history[-3:]) for p in self.processes()]}; errors: {self.errors[-5:]};"
            f" waiting for their address: {sorted(self.waiting)}"
        )

    async def wait_endpoints_async(self, count: int, *, timeout: float = 60.0) -> list[Endpoint]:
        return await asyncio.to_thread(self.wait_endpoints, count, timeout=timeout)

    def wait_finished(self, pod: str, *, timeout: float = 60.0) -> int | None:
        """Block until the Pod's process has exited; return its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, code in self.finished():
                if name == pod:
                    return code
            time.sleep(0.1)
        raise AssertionError(f"the process of {pod} did not exit within {timeout:.0f} s")

    async def wait_finished_async(self, pod: str, *, timeout: float = 60.0) -> int | None:
        return await asyncio.to_thread(self.wait_finished, pod, timeout=timeout)

    # -- the loop --------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync(self._list_pods())
            except (KubectlError, OSError, ValueError) as exc:
                self.errors.append(f"list pods: {exc}")
            self._tend()
            try:
                self._refresh_volumes()
            except (KubectlError, OSError, ValueError) as exc:
                self.errors.append(f"configMap volumes: {exc}")
            self._stop.wait(self.poll_seconds)

    def _list_pods(self) -> list[dict[str, Any]]:
        listing = kubectl_json(
            "get", "pods", "-n", self.namespace, "-l", self.selector, kubeconfig=self.kubeconfig
        )
        return list(listing.get("items", []))

    def _sync(self, pods: list[dict[str, Any]]) -> None:
        present = {}
        for pod in pods:
            uid = pod["metadata"]["uid"]
            present[uid] = pod
            gone = pod["metadata"].get("deletionTimestamp") is not None
            if uid not in self._running and not gone and self._runnable(pod):
                self._start(pod)
        for uid, record in list(self._running.items()):
            seen = present.get(uid)
            if (seen is None or seen["metadata"].get("deletionTimestamp")) and not record.terminating:
                self._terminate(record)

    @staticmethod
    def _runnable(pod: dict[str, Any]) -> bool:
        status = pod.get("status", {})
        return status.get("phase") == "Running" and bool(status.get("podIP"))

    def _start(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        try:
            spec = self._container(pod)
            env = self._environment(pod, spec)
            volumes, mounts = self._project_volumes(pod, spec)
        except (EnvError, KubectlError, OSError) as exc:
            self.errors.append(f"{name}: {exc}")
            return
        env = {key: _remount(value, mounts) for key, value in env.items()}
        ip = pod["status"]["podIP"]
        port = self._port(spec)
        if any((r.ip, r.port) == (ip, port) for r in self._running.values()) or port_open(ip, port):
            # Someone listens there already: the worker of a deleted Pod still draining at a
            # reused IP, or another cluster's. Start when it is gone (the next polls retry):
            # meanwhile it would answer the health checks meant for ours.
            self.waiting.add(name)
            return
        self.waiting.discard(name)
        env = {**env, "RESONANCE_HOST": ip, "RESONANCE_PORT": str(port), **self.env_overrides}
        env = {key: value for key, value in env.items() if key not in self.env_unset}
        process = ServiceProcess(
            f"{name}@{ip}:{port}", [worker_command()], log_path=self.workdir / f"{name}.log", env=env
        )
        record = PodProcess(
            pod=name,
            uid=pod["metadata"]["uid"],
            labels=dict(pod["metadata"].get("labels", {})),
            ip=ip,
            port=port,
            env=env,
            grace_seconds=float(pod["spec"].get("terminationGracePeriodSeconds", 30)),
            process=process,
            volumes=volumes,
        )
        process.start()
        record.history.append(f"started pid {process.pid} at {ip}:{port}")
        with self._lock:
            self._running[record.uid] = record

    def _terminate(self, record: PodProcess) -> None:
        record.kill_at = time.monotonic() + record.grace_seconds
        record.process.signal(signal.SIGTERM)
        record.history.append(f"pod gone: SIGTERM, {record.grace_seconds:.0f} s grace")

    def _tend(self) -> None:
        """Health checks, restarts, grace deadlines and reaping."""
        now = time.monotonic()
        for uid, record in list(self._running.items()):
            alive = record.process.alive()
            if record.terminating:
                if not alive:
                    record.exit_code = record.process.proc.returncode if record.process.proc else None
                    record.history.append(f"exited {record.exit_code}")
                    with self._lock:
                        del self._running[uid]
                        self._finished.append(record)
                elif record.kill_at is not None and now >= record.kill_at:
                    record.process.signal(signal.SIGKILL)
                    record.history.append("grace over: SIGKILL")
                continue
            if not alive:
                self._restart(record, now)
            elif not record.healthy:
                record.healthy = health_ok(record.ip, record.port)

    def _restart(self, record: PodProcess, now: float) -> None:
        if record.restart_at is None:
            code = record.process.proc.returncode if record.process.proc else None
            delay = RESTART_BACKOFF_SECONDS[min(record.restarts, len(RESTART_BACKOFF_SECONDS) - 1)]
            record.restart_at = now + delay
            record.healthy = False
            record.history.append(f"exited {code} while the pod runs: restart in {delay} s")
        elif now >= record.restart_at:
            record.restart_at = None
            record.restarts += 1
            record.process.start()
            record.history.append(f"restarted: pid {record.process.pid}")

    # -- configMap volumes -----------------------------------------------------------------------------------

    def _project_volumes(
        self, pod: dict[str, Any], container: dict[str, Any]
    ) -> tuple[dict[Path, str], dict[str, Path]]:
        """Project the container's ``configMap`` volumes: ``(directory: ConfigMap, mountPath: directory)``."""
        sources = {v["name"]: v["configMap"] for v in pod["spec"].get("volumes", []) if "configMap" in v}
        volumes: dict[Path, str] = {}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            source = sources.get(mount["name"])
            if source is None:
                continue
            directory = self.workdir / "volumes" / pod["metadata"]["uid"] / mount["name"]
            data = self._object("configmap", source, decode=False)
            project(directory, data)
            volumes[directory] = source["name"]
            mounts[mount["mountPath"].rstrip("/")] = directory
        return volumes, mounts

    def _refresh_volumes(self) -> None:
        with self._lock:
            records = [r for r in self._running.values() if r.volumes and not r.terminating]
        fetched: dict[str, dict[str, str]] = {}
        for record in records:
            for directory, name in record.volumes.items():
                if name not in fetched:
                    fetched[name] = self._object("configmap", {"name": name, "optional": True}, decode=False)
                project(directory, fetched[name])

    # -- the Pod spec ----------------------------------------------------------------------------------------

    def _container(self, pod: dict[str, Any]) -> dict[str, Any]:
        containers = pod["spec"].get("containers", [])
        for container in containers:
            if container.get("name") == self.container:
                return dict(container)
        raise EnvError(f"no container {self.container!r} in the pod")

    @staticmethod
    def _port(container: dict[str, Any]) -> int:
        ports = container.get("ports", [])
        for port in ports:
            if port.get("name") == "http":
                return int(port["containerPort"])
        return int(ports[0]["containerPort"]) if ports else DEFAULT_PORT

    def _environment(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self._object("configmap", source["configMapRef"], decode=False)
            else:
                data = self._object("secret", source["secretRef"], decode=True)
            env.update({prefix + key: value for key, value in data.items()})
        for variable in container.get("env", []):
            value = self._value(pod, variable, env)
            if value is not None:
                env[variable["name"]] = value
        return env

    def _value(self, pod: dict[str, Any], variable: dict[str, Any], env: dict[str, str]) -> str | None:
        if "valueFrom" not in variable:
            return expand(str(variable.get("value", "")), env)
        source = variable["valueFrom"]
        if "secretKeyRef" in source:
            return self._key("secret", source["secretKeyRef"], decode=True)
        if "configMapKeyRef" in source:
            return self._key("configmap", source["configMapKeyRef"], decode=False)
        if "fieldRef" in source:
            return pod_field(pod, source["fieldRef"]["fieldPath"])
        raise EnvError(f"{variable['name']}: unsupported valueFrom {sorted(source)}")

    def _object(self, kind: str, ref: dict[str, Any], *, decode: bool) -> dict[str, str]:
        try:
            body = kubectl_json("get", kind, ref["name"], "-n", self.namespace, kubeconfig=self.kubeconfig)
        except KubectlError as exc:
            if ref.get("optional"):
                return {}
            raise EnvError(f"{kind} {ref['name']}: {exc}") from exc
        data: dict[str, str] = body.get("data", {})
        if decode:
            return {key: base64.b64decode(value).decode() for key, value in data.items()}
        return dict(data)

    def _key(self, kind: str, ref: dict[str, Any], *, decode: bool) -> str | None:
        data = self._object(kind, ref, decode=decode)
        if ref["key"] in data:
            return data[ref["key"]]
        if ref.get("optional"):
            return None
        raise EnvError(f"{kind} {ref['name']} has no key {ref['key']!r}")


def project(directory: Path, data: dict[str, str]) -> bool:
    """Write ``data`` into ``directory`` as the kubelet's atomic writer does; False when unchanged."""
    current = directory / "..data"
    if current.is_dir() and {p.name: p.read_text() for p in current.iterdir()} == data:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    stamp = Path(tempfile.mkdtemp(prefix="..", dir=directory))
    for key, value in data.items():
        (stamp / key).write_text(value)
    old = current.resolve() if current.is_symlink() else None
    link = directory / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(stamp.name)
    link.rename(current)
    for key in data:
        entry = directory / key
        if not entry.is_symlink():
            entry.symlink_to(f"..data/{key}")
    if old is not None and old != stamp:
        shutil.rmtree(old, ignore_errors=True)
    return True


def _remount(value: str, mounts: dict[str, Path]) -> str:
    """An environment value naming a path under a container ``mountPath``, pointed at its projection."""
    for mount_path, directory in mounts.items():
        if value == mount_path or value.startswith(mount_path + "/"):
            return str(directory) + value[len(mount_path) :]
    return value


def pod_field(pod: dict[str, Any], path: str) -> str:
    """The downward API's ``fieldRef`` values a worker uses."""
    simple = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"].get("namespace", ""),
        "metadata.uid": pod["metadata"].get("uid", ""),
        "status.podIP": pod.get("status", {}).get("podIP", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_FIELD.fullmatch(path)
    if match:
        return str(pod["metadata"].get(match.group(1), {}).get(match.group(2), ""))
    raise EnvError(f"unsupported fieldRef {path!r}")


def worker_command() -> str:
    """``resonance-worker`` beside this interpreter (the project's .venv), else on PATH."""
    beside = Path(sys.executable).with_name("resonance-worker")
    if beside.exists():
        return str(beside)
    found = shutil.which("resonance-worker")
    if found is None:
        raise RuntimeError("resonance-worker not found: run `uv sync` (it is the project's console script)")
    return found


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Pod IPs are local: never through an HTTP proxy from the environment."""


def port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


def health_ok(ip: str, port: int) -> bool:
    with (
        contextlib.suppress(OSError, urllib.error.URLError),
        _DIRECT.open(f"http://{ip}:{port}/health", timeout=1) as response,
    ):
        return bool(response.status == 200)
    return False
