"""What the rollout pass does after the children are applied."""

from __future__ import annotations

from resonance_operator.api.conditions import ProgressingReason
from resonance_operator.probe.targets import DrainRequest, PodTarget
from resonance_operator.rollout.decision import ActionKind, Decision
from resonance_operator.rollout.request import ACTION_ANNOTATION
from resonance_operator.rollout.state import RolloutState
from resonance_operator.rollout_pass import act, step
from resonance_operator.status.facts import RolloutView

from tests.operator import fixtures
from tests.operator.rollout_pass import fakes

DONE = Decision(ActionKind.NONE, RolloutState(), ProgressingReason.ROLLOUT_COMPLETED, "")
VIEW = RolloutView({}, False, ProgressingReason.ROLLOUT_COMPLETED, "")


async def test_nothing_to_carry_out_touches_nothing() -> None:
    kube, probe = fakes.Kube(), fakes.Probe()
    await act.carry_out(kube, probe, fixtures.cluster(), step.Pass(DONE, VIEW, step.Memory()))
    assert kube.patched == [] and probe.drained == []


async def test_drains_start_and_a_handled_annotation_goes() -> None:
    kube, probe = fakes.Kube(), fakes.Probe()
    request = DrainRequest(200, 1, 0, 30, 0, 300.0, 7)
    drains = step.Drains("k3y", ((PodTarget("old-1", "r1", "10.0.0.1", 8000), request),))
    done = step.Pass(DONE, VIEW, step.Memory(), remove_annotation=True, drains=drains)
    await act.carry_out(kube, probe, fixtures.cluster(), done)
    assert probe.drained == [("old-1", request, "k3y")]
    assert kube.patched == [
        (
            "/apis/resonance.liminal.dev/v1alpha1/namespaces/team-a/resonanceclusters/demo",
            {"metadata": {"annotations": {ACTION_ANNOTATION: None}}},
        )
    ]
