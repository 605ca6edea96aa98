"""The pure half of the probe: which Pods to reach and what to send them."""

from __future__ import annotations

import zlib

from resonance_operator.api.spec import DrainOptions
from resonance_operator.probe.targets import PodTarget, drain_requests, pod_targets


def test_pod_targets_take_running_pods_with_an_ip_and_the_named_port() -> None:
    def pod(name: str, **status: str) -> dict[str, object]:
        return {
            "metadata": {"name": name, "labels": {"rev": "r2"}},
            "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8000}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", **status},
        }

    pending = pod("p-pending", phase="Pending")
    no_ip = pod("p-no-ip", podIP="")
    unlabelled = pod("p-unlabelled")
    unlabelled["metadata"] = {"name": "p-unlabelled", "labels": {}}
    terminating = pod("p-terminating")
    terminating["metadata"] = {"name": "p-terminating", "labels": {"rev": "r2"}, "deletionTimestamp": "x"}
    other_port = pod("p-other-port")
    other_port["spec"] = {"containers": [{"ports": [{"name": "metrics", "containerPort": 9}]}]}
    ipv6 = pod("p-ipv6", podIP="fd00::1")
    pods = [pod("p-b"), pod("p-a"), pending, no_ip, unlabelled, terminating, other_port, ipv6]
    targets = pod_targets(pods, "rev", "http")
    assert [t.name for t in targets] == ["p-a", "p-b", "p-ipv6"]
    assert targets[0].url("/metrics") == "http://10.0.0.1:8000/metrics"
    assert targets[2].url("/drain") == "http://[fd00::1]:8000/drain"


def test_drain_requests_split_the_budget_between_the_losing_pods() -> None:
    targets = [PodTarget(f"w-{i}", "r1", f"10.0.0.{i}", 8000) for i in range(3)]
    options = DrainOptions(reconnects_per_second=90, window_seconds=20, remaining_threshold=5)
    requests = drain_requests(options, targets, 42.5)
    assert [(r.pods, r.pod_index) for r in requests] == [(3, 0), (3, 1), (3, 2)]
    assert {(r.budget_per_second, r.window_seconds, r.remaining_threshold) for r in requests} == {(90, 20, 5)}
    assert [r.seed for r in requests] == [zlib.crc32(f"w-{i}".encode()) for i in range(3)]
    assert {r.deadline_seconds for r in requests} == {42.5}
    # A deadline already past still asks the worker for a positive one (the machine scales down anyway).
    assert drain_requests(options, targets[:1], -7.0)[0].deadline_seconds == 1.0
    assert drain_requests(options, [], 10.0) == []
