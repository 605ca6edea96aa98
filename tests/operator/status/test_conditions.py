from __future__ import annotations

from resonance_operator.api.conditions import ConditionStatus, ConditionType, Reason
from resonance_operator.status import conditions


def test_last_transition_time_is_kept_while_the_status_holds() -> None:
    first = conditions.make(
        [], ConditionType.READY, ConditionStatus.FALSE, Reason.WORKERS_NOT_READY, "m", generation=1, now="t1"
    )
    assert first["lastTransitionTime"] == "t1"
    same = conditions.make(
        [first],
        ConditionType.READY,
        ConditionStatus.FALSE,
        Reason.REDIS_NOT_READY,
        "n",
        generation=2,
        now="t2",
    )
    assert same["lastTransitionTime"] == "t1"
    assert (same["reason"], same["message"], same["observedGeneration"]) == ("RedisNotReady", "n", 2)
    flipped = conditions.make(
        [same],
        ConditionType.READY,
        ConditionStatus.TRUE,
        Reason.ALL_COMPONENTS_READY,
        "ok",
        generation=2,
        now="t3",
    )
    assert flipped["lastTransitionTime"] == "t3"
    assert conditions.is_true([flipped], ConditionType.READY)
    assert not conditions.is_true([flipped], ConditionType.DEGRADED)
    assert conditions.find([flipped], ConditionType.PROGRESSING) is None
