"""Emotional state: report validation and smoothing, with hand-computed numbers."""

from __future__ import annotations

import math

import pytest
from resonance_worker.domain.emotion import (
    LABEL_MAX_CHARS,
    EmotionalState,
    EmotionReportError,
    EmotionSmoother,
    StateSource,
    parse_report,
)


def test_a_full_report_is_parsed() -> None:
    state = parse_report(
        {"valence": 0.5, "arousal": 0.25, "label": "  quietly   hopeful ", "source": "biometric"}, now=12.5
    )
    assert state == EmotionalState(0.5, 0.25, StateSource.BIOMETRIC, 12.5, "quietly hopeful")
    assert state.to_dict() == {
        "valence": 0.5,
        "arousal": 0.25,
        "source": "biometric",
        "at": 12.5,
        "label": "quietly hopeful",
    }


def test_source_defaults_to_self_report_and_integers_are_numbers() -> None:
    state = parse_report({"valence": -1, "arousal": 1}, now=0.0)
    assert state.source is StateSource.SELF_REPORT
    assert (state.valence, state.arousal, state.label) == (-1.0, 1.0, None)


def test_labels_in_other_scripts_are_accepted() -> None:
    assert parse_report({"valence": 0, "arousal": 0, "label": "спокойно, но устало"}, now=0).label == (
        "спокойно, но устало"
    )


@pytest.mark.parametrize(
    ("raw", "field", "reason_part"),
    [
        ([0.1, 0.2], "report", "JSON object"),
        ({"arousal": 0.2}, "valence", "required"),
        ({"valence": 0.2}, "arousal", "required"),
        ({"valence": 1.01, "arousal": 0.2}, "valence", "between -1 and 1"),
        ({"valence": 0.0, "arousal": -0.01}, "arousal", "between 0 and 1"),
        ({"valence": math.nan, "arousal": 0.2}, "valence", "finite"),
        ({"valence": 0.0, "arousal": math.inf}, "arousal", "finite"),
        ({"valence": "0.3", "arousal": 0.2}, "valence", "number, got str"),
        ({"valence": True, "arousal": 0.2}, "valence", "number, got bool"),
        ({"valence": 0, "arousal": 0, "label": 7}, "label", "string"),
        ({"valence": 0, "arousal": 0, "label": "   "}, "label", "blank"),
        ({"valence": 0, "arousal": 0, "label": "x" * (LABEL_MAX_CHARS + 1)}, "label", "at most 40"),
        ({"valence": 0, "arousal": 0, "label": "<script>"}, "label", "'<'"),
        ({"valence": 0, "arousal": 0, "label": "ok\x00"}, "label", "not allowed"),
        ({"valence": 0, "arousal": 0, "source": "guess"}, "source", "self_report, biometric"),
        ({"valence": 0, "arousal": 0, "mood": "x"}, "mood", "unknown field"),
    ],
)
def test_nonsense_is_refused_with_the_field_and_reason(raw: object, field: str, reason_part: str) -> None:
    with pytest.raises(EmotionReportError) as caught:
        parse_report(raw, now=0.0)
    assert caught.value.field == field
    assert reason_part in caught.value.reason
    assert str(caught.value).startswith(f"{field}: ")


def test_a_state_built_directly_is_validated_too() -> None:
    with pytest.raises(EmotionReportError, match="valence"):
        EmotionalState(2.0, 0.5, StateSource.SELF_REPORT, 0.0)
    with pytest.raises(EmotionReportError, match="at"):
        EmotionalState(0.0, 0.5, StateSource.SELF_REPORT, math.inf)
    with pytest.raises(EmotionReportError, match="cleaned label"):
        EmotionalState(0.0, 0.5, StateSource.SELF_REPORT, 0.0, label="  two  spaces")


def _report(
    valence: float, arousal: float, at: float, source: StateSource = StateSource.SELF_REPORT
) -> EmotionalState:
    return EmotionalState(valence, arousal, source, at)


def test_smoothing_worked_example() -> None:
    # h = 60 s. t=0: valence 0 → S=0, W=1. t=60: W = 1·½ + 1 = 1.5, S = 0 + (1 − 0)/1.5 = 0.6667.
    # Closed form: (0·½ + 1·1) / (½ + 1) = 0.6667.
    smoother = EmotionSmoother(half_life_s=60)
    first = smoother.update("ann", _report(0.0, 0.2, 0))
    assert (first.valence, first.arousal, first.weight) == (0.0, 0.2, 1.0)
    second = smoother.update("ann", _report(1.0, 0.8, 60))
    assert second.weight == pytest.approx(1.5)
    assert second.valence == pytest.approx(2 / 3)
    assert second.arousal == pytest.approx(0.2 + 0.6 / 1.5)  # 0.6
    assert smoother.current("ann") == second


def test_reports_at_the_same_instant_are_averaged_and_late_ones_do_not_go_back() -> None:
    smoother = EmotionSmoother(half_life_s=60)
    smoother.update("bo", _report(-1.0, 0.0, 10))
    same = smoother.update("bo", _report(1.0, 1.0, 10))
    assert (same.valence, same.arousal, same.weight) == (0.0, 0.5, 2.0)
    late = smoother.update("bo", _report(1.0, 1.0, 5))  # a clock step back counts as "now"
    assert late.at == 10
    assert late.weight == 3.0
    assert late.valence == pytest.approx(1 / 3)


def test_a_long_gap_lets_the_new_report_dominate() -> None:
    smoother = EmotionSmoother(half_life_s=10)
    smoother.update("cy", _report(-1.0, 0.0, 0))
    after = smoother.update("cy", _report(1.0, 1.0, 200))  # 20 half-lives: old weight 2^-20
    assert after.valence == pytest.approx(1.0, abs=1e-5)


def test_sources_and_people_are_smoothed_separately_and_can_be_forgotten() -> None:
    smoother = EmotionSmoother()
    smoother.update("dee", _report(1.0, 1.0, 0))
    smoother.update("dee", _report(-1.0, 0.0, 0, StateSource.BIOMETRIC))
    smoother.update("eve", _report(0.5, 0.5, 0))
    self_state = smoother.current("dee")
    body_state = smoother.current("dee", StateSource.BIOMETRIC)
    assert self_state is not None
    assert body_state is not None
    assert (self_state.valence, body_state.valence) == (1.0, -1.0)
    smoother.forget("dee")
    assert smoother.current("dee") is None
    assert smoother.current("dee", StateSource.BIOMETRIC) is None
    assert smoother.current("eve") is not None


@pytest.mark.parametrize("half_life", [0.0, -1.0, math.nan])
def test_smoother_refuses_a_bad_half_life(half_life: float) -> None:
    with pytest.raises(ValueError, match="half_life_s"):
        EmotionSmoother(half_life)
