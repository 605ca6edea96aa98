"""The field rules and namespace rules of the rule book, one by one."""

from __future__ import annotations

from typing import Any

import pytest
from resonance_worker.domain.channels import ChannelRules, default_namespaces
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.domain.requests import rules
from resonance_worker.domain.requests.rules import MAX_OFFSET, RequestError


@pytest.mark.parametrize("value", [0, 1, 7, MAX_OFFSET])
def test_an_offset_is_an_integer_from_0_to_2_64(value: int) -> None:
    assert rules.offset(value) == value


@pytest.mark.parametrize(
    "value",
    [True, False, "5", "0", -1, MAX_OFFSET + 1, 1.0, 1.5, None, [1], {"n": 1}],
    ids=[
        "true",
        "false",
        "digits",
        "zero-string",
        "negative",
        "past-uint64",
        "float",
        "fraction",
        "null",
        "list",
        "object",
    ],
)
def test_anything_else_is_not_an_offset(value: Any) -> None:
    with pytest.raises(RequestError) as refused:
        rules.offset(value, fatal=True)
    assert refused.value.code is ErrorCode.BAD_REQUEST and refused.value.fatal
    assert "offset" in refused.value.message


def test_a_history_limit_is_an_integer_not_a_bool_nor_digits() -> None:
    assert rules.history_limit(5) == 5 and rules.history_limit(-1) == -1 and rules.history_limit(0) == 0
    for bad in (True, False, "5", 2.0, None):
        with pytest.raises(RequestError) as refused:
            rules.history_limit(bad)
        assert refused.value.code is ErrorCode.BAD_REQUEST and not refused.value.fatal


def test_a_stream_position_defaults_and_its_epoch_is_a_string() -> None:
    assert rules.position({}) == (0, "")
    assert rules.position({"offset": 3, "epoch": "e"}) == (3, "e")
    for bad in ({"epoch": 5}, {"epoch": None}, {"offset": "3"}, {"offset": True}):
        with pytest.raises(RequestError):
            rules.position(bad)


def test_since_is_absent_or_an_object() -> None:
    assert rules.since(None) is None
    assert rules.since({"offset": 2, "epoch": "x"}) == (2, "x")
    for bad in (3, "2", [2, "x"], True):
        with pytest.raises(RequestError) as refused:
            rules.since(bad)
        assert "since" in refused.value.message


def test_data_is_raw_json_and_required_data_is_not_null() -> None:
    assert rules.raw_data(None) is None
    assert rules.raw_data({"a": [1, "x"]}) == b'{"a":[1,"x"]}'
    assert rules.raw_data(False) == b"false"
    assert rules.required_data(0) == b"0"
    with pytest.raises(RequestError) as refused:
        rules.required_data(None)
    assert refused.value.code is ErrorCode.BAD_REQUEST and refused.value.message == "data is required"


def test_tokens_channels_flags_and_strings() -> None:
    assert (
        rules.optional_token(None) == "" and rules.optional_token("") == "" and rules.optional_token(0) == ""
    )
    assert rules.optional_token("t") == "t"
    with pytest.raises(RequestError) as refused:
        rules.optional_token(5)
    assert refused.value.fatal
    with pytest.raises(RequestError) as refused:
        rules.optional_token(["t"], fatal=False)
    assert not refused.value.fatal
    assert rules.channel("chat:a") == "chat:a"
    for bad in ("", None, 5, ["chat:a"]):
        with pytest.raises(RequestError) as refused:
            rules.channel(bad)
        assert refused.value.fatal, "a channel-less command is malformed"
    assert rules.boolean(True, "reverse") is True
    for bad in (1, "true", None):
        with pytest.raises(RequestError):
            rules.boolean(bad, "reverse")
    assert rules.fields(None, "subs") == {} and rules.fields({"a": 1}, "subs") == {"a": 1}
    with pytest.raises(RequestError):
        rules.fields([1], "subs", fatal=True)
    assert rules.is_integer(3) and not rules.is_integer(True) and not rules.is_integer("3")


def test_namespace_rules() -> None:
    channels = ChannelRules(default_namespaces(), max_channel_length=20)
    assert rules.channel_options(channels, "chat:a").has_history
    with pytest.raises(RequestError) as refused:
        rules.channel_options(channels, "nope:a")
    assert refused.value.code is ErrorCode.UNKNOWN_CHANNEL
    for name in ("x" * 21, "chat:a\nb"):
        with pytest.raises(RequestError) as refused:
            rules.channel_options(channels, name)
        assert refused.value.code is ErrorCode.BAD_REQUEST and not refused.value.fatal
    rules.require_presence(default_namespaces()["chat"])
    rules.require_history(default_namespaces()["chat"])
    typing = default_namespaces()["typing"]
    for require in (rules.require_presence, rules.require_history):
        with pytest.raises(RequestError) as refused:
            require(typing)
        assert refused.value.code is ErrorCode.NOT_AVAILABLE


@pytest.mark.parametrize(
    ("limit", "cap", "capped"),
    [
        (5, 1000, 5),
        (0, 1000, 0),
        (1000, 1000, 1000),
        (5000, 1000, 1000),
        (-1, 1000, 1000),
        (-1, 0, -1),
        (9, 0, 9),
    ],
)
def test_the_history_limit_cap(limit: int, cap: int, capped: int) -> None:
    assert rules.capped_limit(limit, cap) == capped
