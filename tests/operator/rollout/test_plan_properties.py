"""Random walks through the step machine: whatever happens, its invariants hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from resonance_operator.api.conditions import ProgressingReason
from resonance_operator.api.spec import RolloutSpec
from resonance_operator.rollout.analysis import AnalysisSpec, Measurement, Phase
from resonance_operator.rollout.decision import ActionKind, Observed
from resonance_operator.rollout.plan import decide
from resonance_operator.rollout.request import Request
from resonance_operator.rollout.state import RolloutState, record

SPECS = {
    "canary": RolloutSpec.model_validate(
        {
            "strategy": "canary",
            "canary": {
                "steps": [
                    {"setWeight": 10},
                    {"analysis": {"intervalSeconds": 5, "consecutiveSuccesses": 2, "failureLimit": 1}},
                    {"pause": {"durationSeconds": 30}},
                    {"setWeight": 60},
                    {"pause": {}},
                ]
            },
        }
    ),
    "blueGreen": RolloutSpec.model_validate(
        {"strategy": "blueGreen", "blueGreen": {"autoPromotionEnabled": True, "autoPromotionSeconds": 20}}
    ),
    "rolling": RolloutSpec.model_validate({"strategy": "rolling"}),
}

events = st.tuples(
    st.sampled_from(["r1", "r2", "r3"]),
    st.booleans(),
    st.booleans(),
    st.none() | st.sampled_from(list(Request)),
    st.sampled_from(list(Phase)),
    st.floats(0, 120),
)


@settings(max_examples=300, deadline=None)
@given(strategy=st.sampled_from(sorted(SPECS)), walk=st.lists(events, min_size=1, max_size=40))
def test_invariants_hold_on_any_walk(
    strategy: str, walk: list[tuple[str, bool, bool, Request | None, Phase, float]]
) -> None:
    spec = SPECS[strategy]
    analysis = AnalysisSpec(interval_seconds=5, consecutive_successes=1)
    state = RolloutState()
    now = 0.0
    for desired, ready, drained, request, phase, pause in walk:
        prior = state
        decision = decide(
            spec, state, Observed(desired, ready, drained, request), now, pre_promotion_analysis=analysis
        )
        state = decision.state
        assert state.stable_revision is not None
        assert state.canary_revision != state.stable_revision
        assert state.draining_revision != state.stable_revision
        assert 0 <= state.weight <= 100
        if state.abort_reason is not None:
            assert state.weight == 0
            assert decision.degraded is state.abort_reason
        if decision.reason is ProgressingReason.ROLLOUT_COMPLETED:
            assert state.canary_revision is None and state.draining_revision is None
            assert state.stable_revision == desired
        if decision.action in (ActionKind.PROMOTE, ActionKind.ROLL_BACK):
            assert state.draining_revision is not None and decision.requeue_after
        assert decision.requeue_after is None or decision.requeue_after >= 0
        if request is not None and not decision.request_handled:
            # A request only waits while a revision drains; it is never silently kept forever.
            assert prior.draining_revision is not None
        assert RolloutState.from_status(state.to_status()) == state
        if decision.action is ActionKind.MEASURE:
            state = record(state, Measurement(phase, ()), now)
        now += pause
