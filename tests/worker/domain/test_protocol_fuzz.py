"""Property-based fuzzing of the protocol parser and the session's command
handlers: malformed JSON, wrong types, huge numbers, deep nesting, lone
surrogates, binary frames. Nothing escapes; every frame in is answered by
replies, error replies or a documented disconnect, and a closed session stays
closed."""

from __future__ import annotations

import json
from collections.abc import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resonance_worker.domain.codes import Disconnects
from resonance_worker.domain.protocol import JSON_CODEC, METHODS, ProtocolViolationError, parse_frame

from tests.worker.domain.session_fuzzing import DISCONNECT_CODES, T0, Wire, connected, live, settle


def json_error_codes(frame: bytes) -> Iterator[int]:
    for line in frame.decode().split("\n"):
        reply = json.loads(line)
        assert isinstance(reply, dict)
        if "error" in reply:
            yield reply["error"]["code"]


JSON_WIRE = Wire(
    codec=JSON_CODEC,
    connect=lambda token: json.dumps({"id": 1, "connect": {"token": token}}),
    after_close='{"id": 99, "rpc": {}}',
    error_codes=json_error_codes,
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
channels = st.sampled_from(["chat:x", "chat:#alice", "personal:#bob", "chat:$p", "nope:x", "", "a" * 300])
params = st.fixed_dictionaries(
    {},
    optional={
        "channel": channels | json_values,
        "data": json_values,
        "token": st.text(max_size=40) | json_values,
        "recover": st.booleans() | json_values,
        "offset": st.integers(min_value=-(2**64), max_value=2**64) | json_values,
        "epoch": st.text(max_size=8) | json_values,
        "limit": st.integers(min_value=-(2**40), max_value=2**40) | json_values,
        "method": st.text(max_size=8) | json_values,
        "since": json_values,
    },
)
commands = st.builds(
    lambda cmd_id, method, body, extra: {"id": cmd_id, method: body, **extra},
    st.integers(min_value=-5, max_value=2**33) | json_values,
    st.sampled_from([*METHODS, "bogus"]),
    params | json_values,
    st.dictionaries(st.sampled_from([*METHODS, "x"]), json_values, max_size=2),
)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


raw_lines = st.one_of(
    commands.map(json.dumps),
    st.text(max_size=60),
    st.sampled_from(
        [
            deep(5000),
            '{"id": 1, "connect": ' + deep(2000) + "}",
            '{"id": 1e999, "rpc": {}}',
            '{"id": 184467440737095516160000, "rpc": {}}',
            '{"id": 1, "publish": {"channel": "chat:x", "data": 1e400}}',
            "\ud800",
            '{"id": 1, "rpc": {"data": "\ud800"}}',
            "{",
            "null",
            "[]",
            '{"id": true, "rpc": {}}',
            '{"id": 1, "subscribe": "chat:x"}',
            "\x00\x01\x02",
        ]
    ),
)
frames = st.lists(raw_lines, min_size=1, max_size=4).map("\n".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_parse_frame_returns_commands_or_a_protocol_violation(text: str) -> None:
    try:
        parsed = parse_frame(text)
    except ProtocolViolationError:
        return
    assert parsed and all(isinstance(c.params, dict) for c in parsed)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=5), st.booleans())
def test_any_frames_get_answers_or_a_documented_disconnect(batch: list[str], logged_in: bool) -> None:
    live(JSON_WIRE, batch, signed_in=logged_in)


@settings(max_examples=50, deadline=None)
@given(st.lists(commands.map(json.dumps), min_size=1, max_size=3).map("\n".join))
def test_a_binary_frame_closes_with_bad_request_whatever_came_before(text: str) -> None:
    session = connected(JSON_WIRE)
    session.receive_data(text, T0)
    settle(session, T0)
    session.receive_data(text.encode(), T0)  # the same commands, in a binary frame
    assert session.closed
    assert session.close_reason is not None
    assert session.close_reason.code in (Disconnects.BAD_REQUEST.code, *DISCONNECT_CODES)


def test_pathological_inputs_each_close_with_bad_request() -> None:
    for text in [deep(5000), '{"id": 1e999, "rpc": {}}', "\ud800", "{", "[]", '{"id": 2**99}', ""]:
        session = connected(JSON_WIRE)
        session.receive_data(text, T0)
        assert session.closed, text
        assert session.close_reason == Disconnects.BAD_REQUEST, text


def test_huge_numbers_get_an_answer_for_their_command() -> None:
    # orjson reads integers past 64 bits as floats; the handlers must refuse them by type.
    for huge in (2**80, -(2**80), 2**63, 1e308):
        for method, body in [
            ("history", {"channel": "chat:x", "limit": huge}),
            ("subscribe", {"channel": "chat:x", "recover": True, "offset": huge, "epoch": "e"}),
            ("publish", {"channel": "chat:x", "data": huge}),
            ("rpc", {"method": "echo", "data": huge}),
        ]:
            session = connected(JSON_WIRE)
            session.receive_data(json.dumps({"id": 5, method: body}), T0)
            settle(session, T0)
            answers = [json.loads(f) for f in session.data_to_send()]
            assert session.closed or [a["id"] for a in answers] == [5], (method, huge, answers)
            assert not session.closed or session.close_reason == Disconnects.BAD_REQUEST, (method, huge)


def test_the_documented_codes_are_known() -> None:
    assert Disconnects.BAD_REQUEST.code in DISCONNECT_CODES and len(DISCONNECT_CODES) > 10
