"""The operator under faults, on the real control plane.

* The operator process is ``SIGKILL``-ed in mid-reconcile (a new cluster with many
  children, then a spec edit); a fresh process converges: every child as the spec
  wants it, no stray child, ``Ready=True`` at the current generation.
* The API server is restarted in place while the operator runs; kopf's watches must
  resume: a spec edit and a new cluster after the restart are reconciled by the
  watch path (the resync timer is set far beyond the test), in bounded time.

These operators join the chart's peering with a priority above every other test
operator, so they alone act while they run (the others freeze, as kopf's peering
does), and the dead peers they leave are removed afterwards.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from resonance_operator.api.spec import parse
from resonance_operator.desired import children as desired_children
from resonance_operator.desired import meta
from resonance_operator.settings import OperatorSettings

from e2e.kube import apply, kubectl, kubectl_json, tool, wait_until
from e2e.operator.conftest import (
    PEERING,
    REPO,
    RunningOperator,
    free_port,
    get_cluster,
    is_ready,
    reconciles_by_trigger,
    wait_ready,
)
from tests.harness.processes import die_with_parent

pytestmark = pytest.mark.k8s

# Above the session operator (100) and the peering test's peers (≤ 1000). Each restarted process
# takes a higher one than the process it replaces: kopf pauses for a peer of the same priority
# until that peer's lifetime (60 s) runs out, and a SIGKILL-ed peer never says goodbye.
FAULT_PRIORITY = 5000
KILL_ATTEMPTS = 3
"""Edits tried before a kill lands between the ConfigMap's write and the status write."""
LONG_RESYNC_SECONDS = 900.0  # far beyond any test here: only watch events and resume can act
# kopf retries a failed watch request after 1, 1, 2, 3, 5, 8, 13, 21 s: an outage of a few
# seconds is over by the 4th or 5th attempt; allow the next backoffs and a reconcile on top.
WATCH_RESUME_BOUND = 45.0
CONTROLPLANE = REPO / "e2e" / "cluster" / "controlplane.py"

# Every kind the operator may create, with the plural kubectl lists it by.
CHILD_KINDS = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
}


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / f"{name}.yaml").read_text())
    return body


# --- peering hygiene -----------------------------------------------------------------------------


def _peers() -> dict[str, dict[str, Any]]:
    body = kubectl_json("get", "clusterkopfpeering", PEERING)
    peers: dict[str, dict[str, Any]] = body.get("status") or {}
    return peers


def _wait_peer_in_charge(priority: int = FAULT_PRIORITY) -> None:
    """Until a peer of ``priority`` is registered; then give lower peers time to see it and freeze."""
    wait_until(
        lambda: any(p.get("priority") == priority for p in _peers().values()),
        timeout=30,
        what="the fault operator in the peering",
    )
    if any(p.get("priority", 0) < priority for p in _peers().values()):
        time.sleep(3)  # kopf's peering watch pauses the others; the freeze is not observable from here


def _forget_fault_peers() -> None:
    """A SIGKILL-ed peer stays in the peering until its lifetime runs out; drop ours at once."""
    stale = {identity: None for identity, p in _peers().items() if p.get("priority", 0) >= FAULT_PRIORITY}
    if stale:
        kubectl("patch", "clusterkopfpeering", PEERING, "--type=merge", "-p", json.dumps({"status": stale}))


# --- what converged means ------------------------------------------------------------------------


def live_children(namespace: str, cluster: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every object labelled as a child of ``cluster``, by (apiVersion, kind, name)."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    selector = f"app.kubernetes.io/managed-by={meta.MANAGED_BY},{meta.CLUSTER_LABEL}={cluster}"
    for (api_version, kind), plural in CHILD_KINDS.items():
        for item in kubectl_json("get", plural, "-n", namespace, "-l", selector)["items"]:
            found[(api_version, kind, item["metadata"]["name"])] = item
    return found


def children_in_sync(namespace: str, body: dict[str, Any]) -> bool:
    """Whether the cluster's children are exactly the desired ones, each as the spec wants it."""
    cluster = parse(body)
    # The workers' pod template carries a digest of their Secrets (desired/secrets.py): computed from the
    # Secrets that live, as the operator does.
    live_secrets = {
        item["metadata"]["name"]: item for item in kubectl_json("get", "secrets", "-n", namespace)["items"]
    }
    desired = desired_children.desired_children(
        cluster,
        service_monitor_crd=False,
        fresh=desired_children.FreshSecrets(jwt="unused", neo4j_password="unused"),
        live_secrets=live_secrets,
    )
    live = live_children(namespace, cluster.name)
    wanted = {(c.key.api_version, c.key.kind, c.key.name): c for c in desired}
    if set(live) != set(wanted):
        return False
    return not any(not c.create_only and meta.needs_apply(c.body, live[key]) for key, c in wanted.items())


def converged(namespace: str, name: str) -> dict[str, Any] | None:
    """The cluster when it is Ready at its generation and its children are exactly the desired ones."""
    body = is_ready(name, namespace)
    return body if body is not None and children_in_sync(namespace, body) else None


def assert_converged(namespace: str, name: str, *, timeout: float = 120) -> dict[str, Any]:
    body: dict[str, Any] = wait_until(
        lambda: converged(namespace, name), timeout=timeout, what=f"{name} converged", interval=1.0
    )
    uid = body["metadata"]["uid"]
    for key, child in live_children(namespace, name).items():
        owners = child["metadata"].get("ownerReferences", [])
        assert [(o["uid"], o.get("controller")) for o in owners] == [(uid, True)], (key, owners)
    # No duplicate workers: exactly the replicas asked for, all from one live ReplicaSet.
    selector = f"{meta.CLUSTER_LABEL}={name},{meta.COMPONENT_LABEL}=worker"
    replica_sets = kubectl_json("get", "replicasets", "-n", namespace, "-l", selector)["items"]
    assert len([rs for rs in replica_sets if rs["spec"].get("replicas", 0) > 0]) == 1
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    return body


# --- the operator as a process that can be killed ------------------------------------------------


class OperatorProcess:
    """The ``resonance-operator`` console script with the chart's ServiceAccount token."""

    def __init__(self, kubeconfig: str, log_path: Path, *, priority: int) -> None:
        self.health_port = free_port()
        self.priority = priority
        self.env = {
            **os.environ,
            "RESONANCE_OPERATOR_KUBECONFIG": kubeconfig,
            "RESONANCE_OPERATOR_PEERING": PEERING,
            "RESONANCE_OPERATOR_PRIORITY": str(priority),
            "RESONANCE_OPERATOR_RESYNC_SECONDS": str(LONG_RESYNC_SECONDS),
            "RESONANCE_OPERATOR_METRICS_PORT": "0",
            "RESONANCE_OPERATOR_HEALTH_PORT": str(self.health_port),
            "RESONANCE_OPERATOR_INSTANCE": "e2e-faults",
        }
        self.log: IO[str] = log_path.open("a")
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> OperatorProcess:
        script = Path(sys.executable).parent / "resonance-operator"
        self.process = subprocess.Popen(
            [str(script)], env=self.env, stdout=self.log, stderr=subprocess.STDOUT, text=True,
            preexec_fn=die_with_parent(),
        )  # fmt: skip

        def healthy() -> bool:
            assert self.process is not None and self.process.poll() is None, "the operator exited"
            try:
                url = f"http://127.0.0.1:{self.health_port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until(healthy, timeout=60, what="the operator process healthy")
        _wait_peer_in_charge(self.priority)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


def _delete_clusters(namespace: str) -> None:
    """Delete the namespace's clusters while an operator is still there to run kopf's finalizer."""
    kubectl("delete", "resonanceclusters", "--all", "-n", namespace, "--wait=true", "--timeout=90s")


class FirstEvent:
    """``kubectl get --watch`` of one object; ``wait()`` returns once it reports ``event_type``."""

    def __init__(self, plural: str, name: str, namespace: str, event_type: str) -> None:
        self.event_type = event_type
        self.process = subprocess.Popen(
            [tool("kubectl"), "get", plural, "-n", namespace, f"--field-selector=metadata.name={name}",
             "--watch", "--output-watch-events",
             "-o", "jsonpath={.type}{\"\\n\"}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def wait(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                if line.strip() == self.event_type:
                    return
            raise AssertionError(f"the watch ended before a {self.event_type} event")
        finally:
            self.process.kill()
            self.process.wait(10)


def test_operator_killed_mid_reconcile_converges_on_restart(
    release: dict[str, str], operator_kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "operator.log"
    first = OperatorProcess(operator_kubeconfig, log_path, priority=FAULT_PRIORITY + 1).start()
    try:
        # 1. A cluster with every optional child; killed right after its first child is written.
        manifest = example("full")
        manifest["spec"]["worker"]["replicas"] = 2
        watch = FirstEvent("configmaps", "full-worker-settings", namespace, "ADDED")
        time.sleep(0.5)  # the watch is established before the cluster exists
        apply(manifest, namespace=namespace)
        watch.wait()
        first.kill()
    finally:
        first.stop()
    at_kill = live_children(namespace, "full")
    body = get_cluster("full", namespace)
    print(f"\nkilled after {len(at_kill)} of the children: {sorted(k[2] for k in at_kill)}")
    assert is_ready("full", namespace) is None, "the kill came after the reconcile was done"
    assert ("v1", "ConfigMap", "full-worker-settings") in at_kill

    # 2. A spec edit touching the ConfigMap, the Deployment and the Ingress; killed once the
    #    ConfigMap (first in the apply order) has the new settings. The kill has to land before the
    #    status write, a few API calls later: on a busy machine the watch can report the ConfigMap
    #    after that, so a late kill is tried again with the next edit (another replica count).
    jwt_before = ""
    for attempt in range(KILL_ATTEMPTS):
        replicas, log_level = 3 + attempt, ("DEBUG", "INFO")[attempt % 2]
        operator = OperatorProcess(
            operator_kubeconfig, log_path, priority=FAULT_PRIORITY + 2 + attempt
        ).start()
        try:
            started = time.monotonic()
            body = assert_converged(namespace, "full", timeout=180)
            print(f"converged {time.monotonic() - started:.1f} s after the restart")
            jwt_before = (
                jwt_before or kubectl_json("get", "secret", "full-jwt", "-n", namespace)["data"]["secret"]
            )
            generation = body["metadata"]["generation"]
            watch = FirstEvent("configmaps", "full-worker-settings", namespace, "MODIFIED")
            time.sleep(0.5)
            kubectl(
                "patch", "rescl", "full", "-n", namespace, "--type=merge", "-p",
                json.dumps({"spec": {
                    "worker": {"replicas": replicas, "settings": {"logLevel": log_level}},
                    "ingress": {"host": "edited.example.com"},
                    "podDisruptionBudget": {"enabled": False},
                }}),
            )  # fmt: skip
            watch.wait()
            operator.kill()
        finally:
            operator.stop()
        edited = get_cluster("full", namespace)
        assert edited["metadata"]["generation"] == generation + 1
        if edited["status"]["observedGeneration"] == generation:
            break
        print(f"attempt {attempt + 1}: the kill came after the status write; editing again")
    else:
        raise AssertionError(f"the kill never came before the status write in {KILL_ATTEMPTS} attempts")

    third = OperatorProcess(
        operator_kubeconfig, log_path, priority=FAULT_PRIORITY + 2 + KILL_ATTEMPTS
    ).start()
    try:
        body = assert_converged(namespace, "full", timeout=180)
        assert body["status"]["workers"] == f"{replicas}/{replicas}"
        assert body["status"]["endpoint"] == "wss://edited.example.com/connection/websocket"
        settings = kubectl_json("get", "configmap", "full-worker-settings", "-n", namespace)
        assert settings["data"]["RESONANCE_LOG_LEVEL"] == log_level
        # The generated secret survived both kills: a restart never regenerates it.
        assert kubectl_json("get", "secret", "full-jwt", "-n", namespace)["data"]["secret"] == jwt_before
        _delete_clusters(namespace)
    finally:
        third.stop()
        _forget_fault_peers()
    output = log_path.read_text()
    assert "Traceback" not in output, output[-4000:]


# --- the API server restarted --------------------------------------------------------------------


def harness_workdir(kubeconfig: str) -> Path | None:
    """The harness's workdir when ``kubeconfig`` points at its control plane, else ``None``."""
    candidates = [Path(kubeconfig).resolve().parent]
    if os.environ.get("RESONANCE_CLUSTER_DIR"):
        candidates.insert(0, Path(os.environ["RESONANCE_CLUSTER_DIR"]).resolve())
    servers = {c["cluster"]["server"] for c in yaml.safe_load(Path(kubeconfig).read_text())["clusters"]}
    for workdir in candidates:
        env_file, pid_file = workdir / "env", workdir / "pids" / "kube-apiserver"
        if (
            env_file.is_file()
            and pid_file.is_file()
            and json.loads(env_file.read_text())["server"] in servers
        ):
            return workdir
    return None


@pytest.fixture
def controlplane_workdir(kubeconfig: str) -> Path:
    workdir = harness_workdir(kubeconfig)
    if workdir is None:
        pytest.skip(
            "restarting the API server needs the harness's control plane (e2e/cluster/up): "
            "KUBECONFIG does not sit beside its workdir (env, pids/) and RESONANCE_CLUSTER_DIR is unset "
            "- kind, k3d and other clusters cannot be restarted from here"
        )
    return workdir


def restart_api_server(workdir: Path) -> float:
    """Kill the API server (SIGKILL) and start it again in place; the seconds it was away."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, str(CONTROLPLANE), "restart", "kube-apiserver", "--workdir", str(workdir)],
        check=True,
        timeout=240,
    )
    return time.monotonic() - started


def operator_saw(name: str, namespace: str, generation: int) -> bool:
    """Whether the operator wrote a status for ``generation`` (or later) of the cluster."""
    status = get_cluster(name, namespace).get("status", {})
    return int(status.get("observedGeneration", 0)) >= generation


def edit_acted_on(
    running: RunningOperator, namespace: str, before: dict[str, float], generation: int, level: str
) -> bool:
    """The update handler ran again, and the edit reached the status and the ConfigMap."""
    if reconciles_by_trigger(running).get("change", 0) <= before.get("change", 0):
        return False
    if not operator_saw("minimal", namespace, generation):
        return False
    settings = kubectl_json("get", "configmap", "minimal-worker-settings", "-n", namespace)
    return bool(settings["data"]["RESONANCE_LOG_LEVEL"] == level)


def created_acted_on(namespace: str, name: str) -> bool:
    return operator_saw(name, namespace, 1) and bool(live_children(namespace, name))


def reconciled_in_sync(namespace: str, name: str) -> bool:
    body = get_cluster(name, namespace)
    current = body.get("status", {}).get("observedGeneration") == body["metadata"]["generation"]
    return current and children_in_sync(namespace, body)


class Recorded(logging.Handler):
    """The operator's log lines (kopf's and ours), to explain a failure."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.INFO and "watch" not in record.name:
            self.lines.append(self.format(record)[:400])


@pytest.fixture
def operator_log() -> Iterator[Recorded]:
    recorded = Recorded()
    loggers = [logging.getLogger("kopf"), logging.getLogger("resonance")]
    for logger in loggers:
        logger.addHandler(recorded)
    try:
        yield recorded
    finally:
        for logger in loggers:
            logger.removeHandler(recorded)


def test_watches_resume_after_api_server_restart(
    controlplane_workdir: Path,
    release: dict[str, str],
    operator_kubeconfig: str,
    namespace: str,
    operator_log: Recorded,
) -> None:
    settings = OperatorSettings(
        kubeconfig=operator_kubeconfig,
        resync_seconds=LONG_RESYNC_SECONDS,
        peering=PEERING,
        priority=FAULT_PRIORITY,
        metrics_port=0,
        health_port=free_port(),
        instance="e2e-apiserver-restart",
    )
    running = RunningOperator(settings).start()
    timings: list[tuple[float, float, float]] = []
    try:
        _wait_peer_in_charge()
        apply(example("minimal"), namespace=namespace)
        wait_ready("minimal", namespace)

        for round_ in range(2):  # twice: the watches must survive more than one loss
            away = restart_api_server(controlplane_workdir)
            before = reconciles_by_trigger(running)
            generation = get_cluster("minimal", namespace)["metadata"]["generation"]
            level = ("DEBUG", "WARNING")[round_]
            started = time.monotonic()
            kubectl(
                "patch", "rescl", "minimal", "-n", namespace, "--type=merge",
                "-p", json.dumps({"spec": {"worker": {"settings": {"logLevel": level}}}}),
            )  # fmt: skip
            # What the operator itself does on the edit (Ready also waits for the controller-manager,
            # scheduler and kwok, which lost their watches too): the ConfigMap and the status.
            # The bound: kopf's request backoffs after the outage plus a reconcile, far below the resync.
            # A child's event may bring the edit in first (it reads the cluster afresh); the update
            # handler must run all the same, or the cluster watch is dead.
            try:
                wait_until(
                    functools.partial(edit_acted_on, running, namespace, before, generation + 1, level),
                    timeout=WATCH_RESUME_BOUND,
                    what=f"the operator acting on the spec edit after API server restart {round_ + 1}",
                    interval=0.25,
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n" + "\n".join(operator_log.lines[-80:])) from None
            edit_seconds = time.monotonic() - started
            after_edit = reconciles_by_trigger(running)
            # The watch path acted: the update handler ran (above), the resync timer (900 s) did not.
            assert after_edit.get("resync", 0) == before.get("resync", 0)

            # A new object: kopf only learns of it (and only then starts its timer) from the watch.
            new = example("minimal")
            new["metadata"]["name"] = f"after-restart-{round_}"
            started = time.monotonic()
            apply(new, namespace=namespace)
            wait_until(
                functools.partial(created_acted_on, namespace, new["metadata"]["name"]),
                timeout=WATCH_RESUME_BOUND,
                what=f"the operator acting on a new cluster after API server restart {round_ + 1}",
                interval=0.25,
            )
            create_seconds = time.monotonic() - started
            after = reconciles_by_trigger(running)
            assert after.get("change", 0) > after_edit.get("change", 0)
            timings.append((away, edit_seconds, create_seconds))
            print(
                f"\napi-server restart {round_ + 1}: away {away:.1f} s; the operator acted on an edit in"
                f" {edit_seconds:.1f} s and on a new cluster in {create_seconds:.1f} s;"
                f" reconciles {before} -> {after}"
            )
        # Every cluster's children as its spec wants them, the status at the current generation.
        # (Ready also needs pods, and those wait on kwok and the controller-manager, which lost
        # their watches too: kwok's node leases lapse and pods go NotReady for a while.)
        for name in ("minimal", "after-restart-0", "after-restart-1"):
            wait_until(
                functools.partial(reconciled_in_sync, namespace, name),
                timeout=60,
                what=f"{name}'s children in sync",
            )
        assert running.error is None
        _delete_clusters(namespace)
    finally:
        running.stop()
        _forget_fault_peers()


def test_harness_detection_skips_foreign_clusters(tmp_path: Path) -> None:
    """A kubeconfig with no harness workdir beside it (kind, k3d) is not taken for the harness."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kind", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
        "users": [],
        "contexts": [],
        "current-context": "",
    }
    foreign = tmp_path / "kubeconfig"
    foreign.write_text(yaml.safe_dump(config))
    assert harness_workdir(str(foreign)) is None
    # A workdir for another server beside it is not taken either.
    (tmp_path / "pids").mkdir()
    (tmp_path / "pids" / "kube-apiserver").write_text("1")
    (tmp_path / "env").write_text(json.dumps({"server": f"https://127.0.0.1:{secrets.randbelow(1000) + 1}"}))
    assert harness_workdir(str(foreign)) is None
