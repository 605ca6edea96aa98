"""``kubectl resonance`` as a user runs it: the installed ``kubectl-resonance`` console script found
by ``kubectl`` itself as a plugin, against the real control plane, with real workers behind the Pods
(the podrunner) and clients connected to them. ``status`` shows the revisions, the rollout's step
and weights, each Pod's connections and thyroid pain, the datastores and the last events;
``promote``, ``abort`` and ``retry`` move a real canary.

The output of ``status`` is written to ``.run/kubectl-resonance-status.txt`` (docs/operator.md
shows one such run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from e2e.kube import apply, kubectl, tool, wait_until
from e2e.operator.conftest import RunningOperator, condition, wait_ready
from e2e.operator.rollout_load import ServiceLoad
from e2e.operator.test_rollouts import (
    WORKER_SETTINGS,
    client_token,
    cluster_manifest,
    patch_spec,
    rollout_of,
    wait_status,
    workers,  # noqa: F401 (the fixture)
)
from e2e.podrunner import LoopbackKubelet

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]


def plugin(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``kubectl resonance …`` with the venv's console script on PATH, as a user's install has it."""
    kubectl = tool("kubectl")
    path = os.pathsep.join([str(Path(sys.executable).parent), str(Path(kubectl).parent), os.environ["PATH"]])
    done = subprocess.run(
        [kubectl, "resonance", *args], capture_output=True, text=True, env={**os.environ, "PATH": path}
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_status_promote_abort_retry(
    operator: RunningOperator,
    namespace: str,
    workers: LoopbackKubelet,  # noqa: F811
) -> None:
    rollout = {
        "strategy": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}, {"pause": {}}]},
        "drain": {"maxDrainSeconds": 2},
    }
    apply(cluster_manifest("kr", rollout, settings=WORKER_SETTINGS), namespace=namespace)
    stable = rollout_of(wait_ready("kr", namespace))["stableRevision"]
    load = ServiceLoad(namespace, {"kr-worker": 8}, client_token("kr", namespace)).start()
    try:
        wait_until(lambda: sum(load.replies.values()) > 20, timeout=60, what="clients answered")
        patch_spec("kr", namespace, {"worker": {"settings": {**WORKER_SETTINGS, "logLevel": "DEBUG"}}})

        def paused(body: dict[str, Any]) -> bool:
            status = rollout_of(body)
            return (
                status.get("phase") == "RolloutPaused"
                and (status.get("connections") or {}).get("canary", 0) > 0
            )

        canary = rollout_of(wait_status("kr", namespace, paused, "paused at 50 % with canary clients"))[
            "updateRevision"
        ]

        last: list[str] = []

        def shown() -> str | None:
            out = plugin("status", "kr", "-n", namespace).stdout
            last[:] = [out]
            pods = [line for line in out.splitlines() if line.startswith("  kr-worker-")]
            # Every Pod's own /metrics answered: a number of connections and a pain level on each line.
            answered = [line for line in pods if line.split()[-1] != "-" and line.split()[-2] != "-"]
            return out if len(pods) >= 2 and len(answered) == len(pods) else None

        try:
            out = wait_until(shown, timeout=60, what="status with every pod's metrics")
        except AssertionError as error:
            raise AssertionError(f"{error}; last output:\n{''.join(last)}") from None
    finally:
        load.stop()
    (REPO / ".run").mkdir(exist_ok=True)
    (REPO / ".run" / "kubectl-resonance-status.txt").write_text(out)
    print(out)
    assert f"Cluster:     {namespace}/kr" in out
    assert "Phase:     RolloutPaused  step 2/4" in out
    assert f"Stable:    {stable}  weight 50%" in out and f"Canary:    {canary}  weight 50%" in out
    assert {stable, canary} <= {
        line.split()[1] for line in out.splitlines() if line.startswith("  kr-worker-")
    }
    assert "  redis   managed   ready" in out and "  neo4j   disabled  off" in out
    assert "Ready        True" in out and "Progressing  True" in out
    assert re.search(r"Normal\s+RolloutStarted\s+canary rollout of ", out)

    plugin("promote", "kr", "-n", namespace)  # to the next pause, at 100 %
    wait_status(
        "kr",
        namespace,
        lambda b: rollout_of(b).get("step") == "4/4" and rollout_of(b).get("phase") == "RolloutPaused",
        "promoted one step",
    )
    plugin("abort", "kr", "-n", namespace)
    body = wait_status(
        "kr", namespace, lambda b: condition(b, "Degraded").get("reason") == "RolloutAborted", "aborted"
    )
    assert rollout_of(body)["stableRevision"] == stable
    plugin("retry", "kr", "-n", namespace)
    wait_status(
        "kr",
        namespace,
        lambda b: (
            rollout_of(b).get("phase") == "RolloutPaused" and condition(b, "Degraded")["status"] == "False"
        ),
        "retried up to the first pause",
    )
    plugin("promote", "kr", "-n", namespace, "--full")
    wait_status(
        "kr",
        namespace,
        lambda b: (
            rollout_of(b).get("stableRevision") == canary and rollout_of(b).get("phase") == "RolloutCompleted"
        ),
        "promoted in full",
    )
    missing = plugin("status", "nobody", "-n", namespace, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr

    # A deleted cluster leaves no resonance_operator_cluster_ready series behind.
    def ready_series() -> list[float]:
        return [
            sample.value
            for family in operator.runtime.metrics.clusters_ready.collect()
            for sample in family.samples
            if sample.labels == {"namespace": namespace, "name": "kr"}
        ]

    assert ready_series() == [1.0]
    kubectl("delete", "resonancecluster", "kr", "-n", namespace, "--wait=true", "--timeout=90s")
    wait_until(lambda: ready_series() == [], timeout=30, what="the ready series of the deleted cluster gone")
