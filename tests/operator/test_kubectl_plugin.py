"""``kubectl resonance status``'s text from a cluster, its Pods and Events (pure; the e2e runs the
plugin itself against the real control plane: e2e/operator/test_kubectl_plugin.py)."""

from __future__ import annotations

import calendar
import time

from resonance_operator.kubectl_plugin import PodLine, parser, render_status

NOW = calendar.timegm(time.strptime("2026-12-06T02:00:00Z", "%Y-%m-%dT%H:%M:%SZ"))


def test_status_shows_revisions_weights_pods_datastores_and_the_last_events() -> None:
    cluster = {
        "metadata": {"name": "demo", "namespace": "apps"},
        "spec": {"worker": {"replicas": 2}},
        "status": {
            "endpoint": "ws://demo-worker.apps.svc:8000/connection/websocket",
            "workers": "2/2",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "AllComponentsReady", "message": "ready"},
                {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": ""},
            ],
            "components": {
                "redis": {"mode": "managed", "ready": True},
                "neo4j": {"mode": "disabled", "ready": False},
            },
            "rollout": {
                "strategy": "canary",
                "phase": "RolloutPaused",
                "step": "2/4",
                "stableRevision": "aaa",
                "updateRevision": "bbb",
                "weights": {"stable": 50, "canary": 50},
                "connections": {"stable": 4, "canary": 3},
                "analysis": {"measurements": 3, "failures": 0, "inconclusive": 1, "lastMessage": "fine"},
            },
        },
    }
    pods = [
        PodLine("demo-worker-aaa-1", "aaa", "Running", True, 4.0, 0.25),
        PodLine("demo-worker-bbb-1", "bbb", "Running", False, None, None),
    ]
    events = [
        {"lastTimestamp": f"2026-12-06T01:{m:02d}:00Z", "type": "Normal", "reason": f"R{m}", "message": "m"}
        for m in range(50, 57)
    ]
    text = render_status(cluster, pods, events, now=NOW)
    assert "Cluster:     apps/demo" in text and "Workers:     2/2 ready (spec replicas 2)" in text
    assert "Phase:     RolloutPaused  step 2/4" in text
    assert "Stable:    aaa  weight 50%  connections 4" in text
    assert "Canary:    bbb  weight 50%  connections 3" in text
    assert "Analysis:  3 measured, 0 failed, 1 inconclusive; fine" in text
    assert "demo-worker-aaa-1  aaa       Running  yes    4            0.25" in text
    assert "demo-worker-bbb-1  bbb       Running  no     -            -" in text
    assert "redis   managed   ready" in text and "neo4j   disabled  off" in text
    reasons = [line.split()[2] for line in text.split("Events (last 5):\n")[1].splitlines()[1:]]
    assert reasons == ["R52", "R53", "R54", "R55", "R56"]
    assert "  4m   Normal" in text  # R56, four minutes before NOW


def test_the_buttons_are_the_rollout_actions() -> None:
    assert parser().parse_args(["promote", "demo", "--full"]).full
    assert parser().parse_args(["-n", "apps", "abort", "demo"]).namespace == "apps"
    assert parser().parse_args(["status", "demo", "-n", "apps"]).namespace == "apps"  # as kubectl takes it
    assert parser().parse_args(["retry", "demo"]).namespace is None
