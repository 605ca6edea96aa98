"""Consent claims, whose a record is, per-person key names (pure)."""

from __future__ import annotations

import pytest
from resonance_worker.domain import events
from resonance_worker.domain.consent import ALL_KINDS, ConsentError, DataKind, granted, parse_claim
from resonance_worker.domain.datarights import (
    channel_is_users,
    channel_kind,
    event_concerns,
    people_of,
    publication_concerns,
)
from resonance_worker.domain.keys import PERSON_BODY, PERSON_ROOMS, PERSON_STATE, user_key, user_tag


def test_an_absent_claim_is_no_consent_unless_the_worker_opts_out() -> None:
    assert parse_claim(None) is None
    assert granted(None, required=True) == frozenset()
    assert granted(None, required=False) == ALL_KINDS
    assert granted(parse_claim(["emotions"]), required=False) == {DataKind.EMOTIONS}
    assert parse_claim([]) == frozenset()


@pytest.mark.parametrize("claim", ["emotions", [1], ["emotions", "mood"], {"emotions": True}])
def test_a_claim_that_is_not_a_list_of_known_kinds_is_refused(claim: object) -> None:
    with pytest.raises(ConsentError):
        parse_claim(claim)


def test_an_event_concerns_its_person_and_everyone_it_names() -> None:
    state = events.state_changed("ann", 1.0, {"valence": 0.1, "arousal": 0.2})
    assert people_of(state) == {"ann"} and event_concerns(state, "ann")
    joined = events.presence_changed("room1", 1.0, "ben", joined=True)
    assert people_of(joined) == {"ben"} and not event_concerns(joined, "room1")
    resonance = events.resonance_computed(
        "room1", 1.0, {"member_ids": ["ann", "cy"], "pairs": [{"a": "ann", "b": "cy", "score": 0.5}]}
    )
    assert people_of(resonance) == {"ann", "cy"}
    relaxed = events.thyroid_relaxed("worker-1", 1.0, state="calm", previous="stressed", pain=0.1)
    assert people_of(relaxed) == frozenset()


def test_a_publication_is_a_persons_by_publisher_channel_or_named_user() -> None:
    assert publication_concerns("chat:x", "ann", b'"hi"', "ann")
    assert publication_concerns("bio:#ann", None, b"{}", "ann")
    assert publication_concerns("rest#ben,ann", None, b"1", "ann") and channel_is_users("rest#ben,ann", "ben")
    assert publication_concerns("room:r", None, b'{"type":"state","user":"ann"}', "ann")
    assert not publication_concerns("room:r", None, b'{"type":"state","user":"annie"}', "ann")
    assert not publication_concerns("room:r", None, b"{not json", "ann")
    assert not publication_concerns("chat:x", "ben", b"[1]", "ann")
    assert channel_kind("bio:#ann") is DataKind.BIOMETRICS and channel_kind("room:r") is DataKind.EMOTIONS
    assert channel_kind("chat:x") is None and channel_kind("plain") is None


def test_a_user_id_with_braces_cannot_end_or_steer_its_hash_tag() -> None:
    """Redis Cluster hashes the text between the first ``{`` and the next ``}``: a brace in a user id
    would cut the tag short (``ann}x`` on ``ann``'s slot). Such ids are tagged by their SHA-1."""
    from redis.crc import key_slot

    for user in ("ann}x", "{ann}", "a{b", "}", "x}{y"):
        tag = user_tag(user)
        assert tag.count("{") == 1 and tag.count("}") == 1 and tag.startswith("{h:")
        slots = {
            key_slot(user_key("p", user, kind).encode()) for kind in (PERSON_STATE, PERSON_BODY, PERSON_ROOMS)
        }
        assert slots == {key_slot(f"p.{tag}.x".encode())}  # every key of the person on its tag's slot
    assert user_tag("ann}x") != user_tag("ann") and user_tag("ann}x") != user_tag("ann}y")
    assert user_tag("ann}x") == user_tag("ann}x")  # stable: the same person finds the same keys
    assert user_tag("ann") == "{u:ann}" and user_tag("user:42") == "{u:user:42}"  # no brace: as it was


def test_events_out_of_the_graph_are_marked() -> None:
    kept = events.state_changed("ann", 1.0, {"valence": 0.1, "arousal": 0.2})
    private = events.state_changed("ann", 1.0, {"valence": 0.1, "arousal": 0.2}, graph=False)
    assert not events.kept_out_of_graph(kept) and events.kept_out_of_graph(private)
    assert events.kept_out_of_graph(events.question_asked("ann", 1.0, {"text": "?"}, graph=False))
    assert events.kept_out_of_graph(events.presence_changed("r", 1.0, "ann", joined=False, graph=False))


def test_a_persons_keys_share_one_hash_tag_and_have_a_data_kind() -> None:
    assert user_key("p", "ann", PERSON_STATE) == "p.{u:ann}.person.state"
    assert user_tag("ann") == "{u:ann}"
    assert PERSON_STATE.data_kind is DataKind.EMOTIONS and PERSON_BODY.data_kind is DataKind.BIOMETRICS
    assert PERSON_ROOMS.data_kind is None
