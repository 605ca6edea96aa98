"""Reflective questions: the exact wording for worked examples, the thresholds, the evidence."""

from __future__ import annotations

from resonance_worker.domain.insights import (
    ReflectiveQuestion,
    ask,
    calm_but_activated,
    from_harmony,
    from_home_state,
    from_room_pattern,
    from_self_understanding,
    tense_but_quiet,
)
from resonance_worker.domain.resonance import PatternKind, RoomPattern
from resonance_worker.domain.selfhood import Harmony, HomeState, ReportPair, SelfUnderstanding


def moment(t: float, reported: float, body: float, bpm: float | None = None) -> ReportPair:
    return ReportPair(t=t, reported=reported, body=body, bpm=bpm, label=None)


CALM_BUT_RACING = [moment(10, 0.2, 0.7, 95), moment(20, 0.1, 0.6, 93), moment(30, 0.2, 0.8, 97)]


def test_calm_but_activated_with_heart_rate_worked_example() -> None:
    pairs = [*CALM_BUT_RACING, moment(40, 0.6, 0.6, 80)]  # not a calm report: ignored
    question = calm_but_activated("ann", pairs, resting_bpm=70)
    assert question is not None
    # Mean bpm of the three moments: 95 → 25 above the resting 70.
    assert question.text == (
        "Your heart rate was up, about 25 bpm above your resting rate, each time you reported feeling calm "
        "— what was happening then?"
    )
    assert question.evidence["mismatches"] == 3
    assert question.evidence["matching_reports"] == 3
    assert question.evidence["mean_bpm_above_resting"] == 25.0
    assert [m["t"] for m in question.evidence["moments"]] == [10, 20, 30]
    assert question.to_dict()["id"] == question.id
    assert question.to_dict()["subject"] == "ann"


def test_calm_but_activated_counts_and_shares() -> None:
    four = [*CALM_BUT_RACING, moment(50, 0.2, 0.3)]  # 3 of 4 calm reports (75 % ≥ 60 %)
    question = calm_but_activated("ann", four)
    assert question is not None
    assert (
        question.text
        == "Your body was activated 3 of 4 times you reported feeling calm — what was happening then?"
    )
    six = [*four, moment(60, 0.2, 0.2), moment(70, 0.3, 0.3)]  # 3 of 6 = 50 % < 60 %
    assert calm_but_activated("ann", six) is None
    assert calm_but_activated("ann", CALM_BUT_RACING[:2]) is None  # only twice
    assert calm_but_activated("ann", []) is None


def test_heart_rate_at_or_below_resting_falls_back_to_the_plain_wording() -> None:
    question = calm_but_activated("ann", CALM_BUT_RACING, resting_bpm=100)
    assert question is not None
    assert question.text.startswith("Your body was activated each time")
    assert question.evidence["mean_bpm_above_resting"] == -5.0
    no_bpm = [moment(10, 0.2, 0.7), *CALM_BUT_RACING[1:]]
    plain = calm_but_activated("ann", no_bpm, resting_bpm=70)
    assert plain is not None
    assert "mean_bpm_above_resting" not in plain.evidence


def test_tense_but_quiet() -> None:
    pairs = [moment(1, 0.8, 0.3), moment(2, 0.9, 0.4), moment(3, 0.7, 0.2)]
    question = tense_but_quiet("bo", pairs)
    assert question is not None
    assert question.key == "tense_but_quiet"
    assert question.text == (
        "Your body was quieter than you felt each time you reported feeling tense "
        "— what were you bracing for?"
    )
    assert tense_but_quiet("bo", [*pairs[:2], moment(3, 0.7, 0.6)]) is None


def test_questions_are_deterministic_and_ids_follow_the_evidence() -> None:
    first = calm_but_activated("ann", CALM_BUT_RACING)
    again = calm_but_activated("ann", list(CALM_BUT_RACING))
    other = calm_but_activated("bo", CALM_BUT_RACING)
    assert first is not None
    assert again is not None
    assert other is not None
    assert first == again
    assert first.id == again.id
    assert other.id != first.id
    assert len(first.id) == 32


def _home(stability: float | None) -> HomeState:
    return HomeState(None if stability is None else 0.5, 0.7, stability, 5, "…", None)


def test_home_state_question_only_when_agreement_is_unsteady() -> None:
    question = from_home_state("ann", _home(0.3))
    assert question is not None
    assert question.text.startswith("Your words and your body agreed at some moments")
    assert question.evidence["stability"] == 0.3
    assert from_home_state("ann", _home(0.4)) is None
    assert from_home_state("ann", _home(None)) is None


def test_harmony_question_only_when_harmony_is_low() -> None:
    low = Harmony(0.3, 0.0, 0.5, 0.49, 4, 3600)
    question = from_harmony("ann", low, window_s=3600)
    assert question is not None
    assert (
        question.text
        == "Your states ranged widely in the last 60 minutes — what pulled you in different ways?"
    )
    assert from_harmony("ann", Harmony(0.4, 0.0, 0.5, 0.42, 4, 3600), window_s=3600) is None
    assert from_harmony("ann", Harmony(None, None, None, None, 1, 0), window_s=3600) is None
    short = from_harmony("ann", low, window_s=10)
    assert short is not None
    assert "in the last minute —" in short.text


def _understanding(trend: str | None, bias: float | None) -> SelfUnderstanding:
    return SelfUnderstanding(0.7, 0.6, 0.2, bias, (0.6, 0.7, 0.8), trend, 9, 3)


def test_self_understanding_questions() -> None:
    both = from_self_understanding("ann", _understanding("improving", 0.2))
    assert [q.key for q in both] == ["understanding_improving", "reports_above_body"]
    below = from_self_understanding("ann", _understanding("steady", -0.2))
    assert [q.key for q in below] == ["reports_below_body"]
    assert below[0].text == "Your body is often more activated than you report — when do you first notice it?"
    assert from_self_understanding("ann", _understanding("steady", 0.1)) == []
    assert from_self_understanding("ann", _understanding(None, None)) == []


def test_room_leader_follower_questions() -> None:
    pattern = RoomPattern(
        PatternKind.LEADER_FOLLOWER,
        "r1",
        40.0,
        1.0,
        {
            "leader": "a",
            "followers": {"c": {"lag_s": 2.0, "correlation": 1.0}, "b": {"lag_s": 3.0, "correlation": 1.0}},
        },
    )
    questions = from_room_pattern(pattern, ["a", "b", "c"])
    assert [(q.key, q.subject) for q in questions] == [
        ("room_leading", "a"),
        ("room_following", "b"),
        ("room_following", "c"),
    ]
    assert questions[0].text == (
        "When your state shifted, 2 others in the room followed within about 3 s — "
        "did you sense you were setting the tone?"
    )
    assert (
        questions[1].text
        == "Your state tended to follow a's by about 3 s — what were you picking up from them?"
    )
    assert questions[0].evidence["kind"] == "leader_follower"
    single = RoomPattern(
        PatternKind.LEADER_FOLLOWER, "r1", 40.0, 0.8, {"leader": "a", "followers": {"b": {"lag_s": 4.0}}}
    )
    assert "one other in the room" in from_room_pattern(single, ["a", "b"])[0].text


def test_room_convergence_and_divergence_questions_go_to_every_member() -> None:
    converging = RoomPattern(PatternKind.CONVERGENCE, "r1", 300.0, 0.3, {"over_s": 240.0})
    questions = from_room_pattern(converging, ["bo", "ann"])
    assert [q.subject for q in questions] == ["ann", "bo"]
    assert (
        questions[0].text
        == "The room drifted into agreement over the last 4 minutes — what brought you closer?"
    )
    diverging = RoomPattern(PatternKind.DIVERGENCE, "r1", 300.0, 0.3, {})
    (question,) = from_room_pattern(diverging, ["ann"])
    assert question.key == "room_diverging"
    assert question.text == "The room drifted apart over the last minute — where did your attention go?"


def test_ask_collects_in_a_fixed_order_without_duplicates() -> None:
    tense = [moment(1, 0.8, 0.3), moment(2, 0.9, 0.4), moment(3, 0.7, 0.2)]
    questions = ask(
        "ann",
        pairs=[*CALM_BUT_RACING, *tense],
        resting_bpm=70,
        home=_home(0.2),
        harmony=Harmony(0.2, 0.0, 0.5, 0.55, 4, 3600),
        understanding=_understanding("improving", None),
    )
    assert [q.key for q in questions] == [
        "calm_but_activated",
        "tense_but_quiet",
        "home_unsteady",
        "harmony_low",
        "understanding_improving",
    ]
    assert ask("ann") == []


def test_duplicate_questions_are_dropped() -> None:
    # Two equal questions (same key, subject and evidence) have the same id: ask keeps one.
    q = ReflectiveQuestion("k", "ann", "?", {"x": 1})
    assert q.id == ReflectiveQuestion("k", "ann", "other wording", {"x": 1}).id
    understanding = _understanding("improving", None)
    assert len(ask("ann", understanding=understanding)) == 1
