"""The pure rollout parts driven together, as the reconciler and the workers will drive them.

Workers here are real ``WorkerMetrics`` registries fed with traffic; the "cluster" is a
loop with a hand-moved clock. Nothing is mocked: the parts just are not wired to the
Kubernetes API or to sockets yet (that is what the e2e tests of issue 7 will cover).
"""

from __future__ import annotations

import dataclasses

from prometheus_client import Gauge
from resonance_operator.api.conditions import DegradedReason, ProgressingReason
from resonance_operator.api.spec import RolloutSpec
from resonance_operator.rollout import analysis, canary, exposition, plan, scrapes
from resonance_operator.rollout.decision import ActionKind, Decision, Observed
from resonance_operator.rollout.state import RolloutState, record
from resonance_worker.domain.drain import DrainPolicy, plan_drain
from resonance_worker.metrics import WorkerMetrics

STEPS = [
    {"setWeight": 25},
    {
        "analysis": {
            "intervalSeconds": 10,
            "consecutiveSuccesses": 2,
            "metrics": [{"kind": "errorRatio", "maxValue": 0.05, "minCount": 50}],
        }
    },
    {"setWeight": 50},
    {"pause": {"durationSeconds": 20}},
]


@dataclasses.dataclass
class Pod:
    name: str
    revision: str
    error_every: int  # one error reply per this many commands; 0 = none
    connections: int = 400

    def __post_init__(self) -> None:
        self.metrics = WorkerMetrics()
        Gauge("resonance_thyroid_pain", "pain", registry=self.metrics.registry).set(1.0)

    def serve(self, commands: int) -> None:
        for i in range(1, commands + 1):
            self.metrics.commands.labels("publish").inc()
            if self.error_every and i % self.error_every == 0:
                self.metrics.command_errors.labels("publish", "100").inc()
        self.metrics.connections.set(self.connections)

    def scrape(self, now: float) -> scrapes.Scrape:
        return scrapes.Scrape(
            self.name, self.revision, now, exposition.parse_exposition(self.metrics.render().decode())
        )


def run_canary(canary_error_every: int, commands_per_pass: int = 100) -> list[Decision]:
    spec = RolloutSpec.model_validate({"strategy": "canary", "canary": {"steps": STEPS}})
    state = RolloutState(stable_revision="r1")
    stable = [Pod(f"s{i}", "r1", error_every=200) for i in range(3)]
    canaries: list[Pod] = []
    counts = canary.Current(stable=3, canary=0)
    previous: list[scrapes.Scrape] = []
    drained_at: float | None = None
    decisions: list[Decision] = []
    now = 0.0
    while now < 600:
        for pod in stable + canaries:
            pod.serve(commands_per_pass)
        observed = Observed(
            "r2",
            canary_ready=counts.canary == len(canaries) and counts.canary_ready == counts.canary,
            previous_drained=drained_at is not None and now >= drained_at,
        )
        decision = plan.decide(spec, state, observed, now)
        decisions.append(decision)
        state = decision.state
        if decision.action is ActionKind.SET_WEIGHT:
            # One replica step per tick until settled, new canary Pods available from the next tick.
            split = canary.basic_canary_replicas(
                4,
                state.weight,
                counts,
                max_surge=1,
                max_unavailable=0,
                load=canary.ConnectionLoad(sum(p.connections for p in stable), 1000),
            )
            while len(canaries) < split.canary:
                canaries.append(Pod(f"c{len(canaries)}", "r2", error_every=canary_error_every))
            counts = canary.Current(split.stable, split.canary, canary_available=split.canary)
        if decision.action is ActionKind.START_ANALYSIS:
            previous = [p.scrape(now) for p in stable + canaries]
        if decision.action is ActionKind.MEASURE:
            assert decision.analysis is not None
            current = [p.scrape(now) for p in stable + canaries]
            measurement = analysis.measure(
                decision.analysis, previous, current, canary_revision="r2", stable_revision="r1"
            )
            state = record(state, measurement, now)
            previous = current
        if decision.action in (ActionKind.PROMOTE, ActionKind.ROLL_BACK):
            losing = stable if decision.action is ActionKind.PROMOTE else canaries
            policies = [
                DrainPolicy(100, len(losing), i, window_seconds=5, remaining_threshold=10, deadline=now + 300)
                for i in range(len(losing))
            ]
            plans = [
                plan_drain([f"{p.name}-{n}" for n in range(p.connections)], policy, now, seed=i)
                for i, (p, policy) in enumerate(zip(losing, policies, strict=True))
            ]
            drained_at = max(d.may_exit_at for d in plans)
        if decision.action is ActionKind.SCALE_DOWN_PREVIOUS:
            break
        now += decision.requeue_after if decision.requeue_after else 5.0
    return decisions


def actions(decisions: list[Decision]) -> list[ActionKind]:
    return [d.action for d in decisions if d.action is not ActionKind.NONE]


def test_a_good_canary_walks_its_steps_and_promotes_without_a_hand_on_it() -> None:
    decisions = run_canary(canary_error_every=200)
    assert actions(decisions)[:3] == [
        ActionKind.SET_WEIGHT,
        ActionKind.START_ANALYSIS,
        ActionKind.MEASURE,
    ]
    assert ActionKind.PROMOTE in actions(decisions)
    assert ActionKind.ROLL_BACK not in actions(decisions)
    assert decisions[-1].action is ActionKind.SCALE_DOWN_PREVIOUS
    assert decisions[-1].reason is ProgressingReason.ROLLOUT_COMPLETED
    assert decisions[-1].state.stable_revision == "r2"
    assert all(d.degraded is None for d in decisions)
    weights = [d.state.weight for d in decisions if d.action is ActionKind.SET_WEIGHT]
    assert weights == [25, 50]


def test_a_canary_that_errors_is_rolled_back_by_analysis() -> None:
    decisions = run_canary(canary_error_every=5)  # 20 % errors against stable's 0.5 %
    rolled = next(d for d in decisions if d.action is ActionKind.ROLL_BACK)
    assert rolled.degraded is DegradedReason.ANALYSIS_FAILED
    assert rolled.event is not None and "errorRatio: Failed" in rolled.event.message
    assert ActionKind.PROMOTE not in actions(decisions)
    assert decisions[-1].action is ActionKind.SCALE_DOWN_PREVIOUS
    assert (decisions[-1].reason, decisions[-1].state.stable_revision) == (
        ProgressingReason.ROLLED_BACK,
        "r1",
    )


def test_too_little_traffic_pauses_instead_of_deciding() -> None:
    decisions = run_canary(canary_error_every=5, commands_per_pass=20)
    assert ActionKind.PROMOTE not in actions(decisions)
    assert ActionKind.ROLL_BACK not in actions(decisions)
    assert decisions[-1].reason is ProgressingReason.ROLLOUT_PAUSED
    assert "inconclusive" in decisions[-1].message and decisions[-1].requeue_after is None
