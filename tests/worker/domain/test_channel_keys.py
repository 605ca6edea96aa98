"""A channel's hash tag on a Redis Cluster (``domain.keys.channel_part``, pure)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot
from resonance_worker.domain.keys import channel_of_part, channel_part


@pytest.mark.parametrize(
    "channel", ["chat:room", "a", "#" + "a" * 40, "x{y}", "}", "{", "a}b{c", "{chat:room}"]
)
def test_every_key_of_a_channel_hashes_to_one_slot_and_the_channel_is_found_back(channel: str) -> None:
    part = channel_part(channel)
    names = [
        f"p.stream.{part}",
        f"p.meta.{part}",
        f"p.presence.data.{part}",
        f"p.idem.{part}:key",
        f"p.ch.{part}",
    ]
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert channel_of_part(part) == channel


def test_a_brace_cannot_end_a_channels_tag_early_or_steer_it_onto_another_channels_slot() -> None:
    assert channel_part("chat:room") == "{chat:room}"  # no brace: the channel itself is the tag
    steered = channel_part("room}x")
    assert steered.startswith("{#") and steered.index("}") == 42  # the SHA-1 is the tag
    assert key_slot(f"p.stream.{steered}".encode()) != key_slot(b"p.stream.{room}")
    assert channel_part("{chat:room}") != channel_part("chat:room")
