"""The rollout pass's observation, with a recording API client and probe (the real ones: e2e)."""

from __future__ import annotations

import base64
from typing import Any

from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.probe.targets import PodTarget
from resonance_operator.rollout_pass import observe, step

from tests.operator import fixtures
from tests.operator.rollout_pass import fakes

KEY = ChildKey("v1", "Secret", "demo-worker-api")
WITH_KEY = Observed(children={KEY: {"data": {"key": base64.b64encode(b"k3y").decode()}}})


def canary(status: dict[str, Any] | None = None) -> Any:
    spec = {**fixtures.with_worker(), "rollout": {"strategy": "canary", "canary": {"steps": [{"pause": {}}]}}}
    return fixtures.cluster(spec, status={"rollout": status or {}})


def test_scrapes_skip_a_pod_with_malformed_metrics() -> None:
    good = (PodTarget("a", "r1", "10.0.0.1", 8000), "resonance_connections 3\n")
    bad = (PodTarget("b", "r1", "10.0.0.2", 8000), "resonance_connections{ 3\n")
    scrapes = observe._scrapes([good, bad], 100.0)
    assert [(s.pod, s.revision, s.at) for s in scrapes] == [("a", "r1", 100.0)]
    assert step._connections(scrapes, "r1") == 3
    assert step._connections(scrapes, "r2") is None
    assert step._connections(scrapes, None) is None


async def test_rolling_and_a_quiet_canary_look_at_no_pod() -> None:
    kube, probe = fakes.Kube([fakes.pod("w-1", "r1")]), fakes.Probe()
    rolling = fixtures.cluster()
    seen = await observe.gather(kube, probe, rolling, WITH_KEY, 10.0)
    assert (seen.targets, seen.scrapes, seen.drain_reports, seen.api_key) == ((), (), None, "k3y")
    quiet = await observe.gather(kube, probe, canary({"stableRevision": "r1"}), Observed(), 10.0)
    assert (quiet.targets, quiet.drain_reports, quiet.api_key) == ((), None, None)
    assert kube.listed == [] and probe.scraped == [] and probe.drained == []


async def test_a_rollout_in_flight_scrapes_the_revisions_involved() -> None:
    pods = [fakes.pod("s-1", "r1"), fakes.pod("c-1", "r2"), fakes.pod("x-1", "r0")]
    kube = fakes.Kube(pods)
    probe = fakes.Probe({"s-1": "resonance_connections 7\n", "c-1": "resonance_connections 2\n"})
    cluster = canary({"stableRevision": "r1", "updateRevision": "r2"})
    seen = await observe.gather(kube, probe, cluster, Observed(), 10.0)
    assert [t.name for t in seen.targets] == ["c-1", "s-1", "x-1"]
    assert sorted(probe.scraped) == [("c-1", "/metrics"), ("s-1", "/metrics")]
    assert [(s.pod, s.at) for s in seen.scrapes] == [("c-1", 10.0), ("s-1", 10.0)]
    assert seen.drain_reports is None and probe.drained == []


async def test_a_due_drain_reads_the_progress_of_the_losing_pods() -> None:
    kube = fakes.Kube([fakes.pod("s-1", "r1"), fakes.pod("c-1", "r2"), fakes.pod("c-2", "r2")])
    draining = {
        "stableRevision": "r1",
        "drainingRevision": "r2",
        "drainNotBefore": 5.0,
        "drainDeadline": 65.0,
    }
    probe = fakes.Probe(may_leave=False)
    seen = await observe.gather(kube, probe, canary(draining), WITH_KEY, 20.0)
    assert [name for name, _, _ in probe.drained] == ["c-1", "c-2"]
    assert {(r.pods, r.deadline_seconds, key) for _, r, key in probe.drained} == {(2, 45.0, "k3y")}
    assert seen.drain_reports is not None and [r and r.may_leave for r in seen.drain_reports] == [False] * 2
    # Before drainNotBefore nothing is asked; without the API key nobody can be asked.
    early = fakes.Probe()
    assert (await observe.gather(kube, early, canary(draining), WITH_KEY, 4.0)).drain_reports is None
    keyless = fakes.Probe()
    seen = await observe.gather(kube, keyless, canary(draining), Observed(), 20.0)
    assert seen.drain_reports == (None, None) and early.drained == keyless.drained == []
