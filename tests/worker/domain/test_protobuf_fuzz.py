"""Property-based fuzzing of the protobuf decoder and of a session speaking protobuf, with the invariants
of the JSON fuzz (``test_protocol_fuzz.py``): any bytes decode into commands or a ``ProtocolViolationError``
(3501); a valid frame cut anywhere never decodes into something else silently; every frame a protobuf
session writes is length-delimited Replies whose error and close codes are documented ones; a closed
session stays silent."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resonance_worker.domain import client_pb2 as pb
from resonance_worker.domain.protobuf import PROTOBUF_CODEC, decode_commands, delimited, split_frame
from resonance_worker.domain.protocol import ProtocolViolationError
from resonance_worker.domain.requests.client import Command

from tests.worker.domain.session_fuzzing import Wire, live

texts = st.text(max_size=12)
channels = (
    st.sampled_from(["chat:x", "chat:#alice", "personal:#bob", "chat:$p", "nope:x", "", "a" * 300]) | texts
)
positions = st.builds(pb.StreamPosition, offset=st.integers(0, 2**64 - 1), epoch=texts)
subscribes = st.builds(
    pb.SubscribeRequest,
    channel=channels,
    token=texts,
    recover=st.booleans(),
    offset=st.integers(0, 2**64 - 1),
    epoch=texts,
    positioned=st.booleans(),
    recoverable=st.booleans(),
    join_leave=st.booleans(),
    flag=st.integers(-(2**63), 2**63 - 1),
)
data = st.binary(max_size=20) | st.sampled_from([b'{"a":1}', b"[1,2]", b"null", b"\xff"])
requests = st.one_of(
    st.builds(
        lambda t, s: pb.Command(connect=pb.ConnectRequest(token=t, subs=s)),
        texts,
        st.dictionaries(channels, subscribes, max_size=2),
    ),
    st.builds(lambda s: pb.Command(subscribe=s), subscribes),
    st.builds(lambda c: pb.Command(unsubscribe=pb.UnsubscribeRequest(channel=c)), channels),
    st.builds(lambda c, d: pb.Command(publish=pb.PublishRequest(channel=c, data=d)), channels, data),
    st.builds(lambda c: pb.Command(presence=pb.PresenceRequest(channel=c)), channels),
    st.builds(lambda c: pb.Command(presence_stats=pb.PresenceStatsRequest(channel=c)), channels),
    st.builds(
        lambda c, n, s, r: pb.Command(history=pb.HistoryRequest(channel=c, limit=n, since=s, reverse=r)),
        channels,
        st.integers(-(2**31), 2**31 - 1),
        st.none() | positions,
        st.booleans(),
    ),
    st.builds(lambda m, d: pb.Command(rpc=pb.RPCRequest(method=m, data=d)), texts, data),
    st.builds(lambda d: pb.Command(send=pb.SendRequest(data=d)), data),
    st.builds(lambda t: pb.Command(refresh=pb.RefreshRequest(token=t)), texts),
    st.builds(lambda c, t: pb.Command(sub_refresh=pb.SubRefreshRequest(channel=c, token=t)), channels, texts),
    st.just(pb.Command(ping=pb.PingRequest())),
    st.just(pb.Command()),
)


@st.composite
def commands(draw: st.DrawFn) -> pb.Command:
    command = draw(requests)
    command.id = draw(st.integers(0, 5) | st.integers(0, 2**32 - 1))
    return command


def frame_of(messages: list[pb.Command]) -> bytes:
    return b"".join(delimited(m) for m in messages)


frames = st.one_of(
    st.lists(commands(), min_size=1, max_size=4).map(frame_of),
    st.binary(max_size=80),
    st.tuples(st.lists(commands(), min_size=1, max_size=3).map(frame_of), st.binary(max_size=8)).map(
        b"".join
    ),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_violate(data: bytes) -> None:
    try:
        decoded = decode_commands(data)
    except ProtocolViolationError:
        return
    assert decoded and all(isinstance(c, Command) for c in decoded)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands(), min_size=1, max_size=5), st.data())
def test_a_valid_frame_cut_anywhere_is_refused_or_is_fewer_whole_commands(
    cmds: list[pb.Command], draw: st.DataObject
) -> None:
    whole = frame_of(cmds)
    assert len(split_frame(whole)) == len(cmds)
    cut = draw.draw(st.integers(0, len(whole) - 1))
    try:
        kept = split_frame(whole[:cut])
    except ProtocolViolationError:
        return
    boundaries = {len(frame_of(cmds[:n])) for n in range(len(cmds) + 1)}
    assert cut in boundaries and len(kept) == [len(frame_of(cmds[:n])) for n in range(len(cmds) + 1)].index(
        cut
    )


def protobuf_error_codes(frame: bytes) -> Iterator[int]:
    for raw in split_frame(frame):
        reply = pb.Reply.FromString(raw)
        if reply.HasField("error"):
            yield reply.error.code


PROTOBUF_WIRE = Wire(
    codec=PROTOBUF_CODEC,
    connect=lambda token: delimited(pb.Command(id=1, connect=pb.ConnectRequest(token=token))),
    after_close=delimited(pb.Command(id=99, ping=pb.PingRequest())),
    error_codes=protobuf_error_codes,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=5), st.booleans())
def test_any_frames_get_answers_or_a_documented_disconnect(batch: list[bytes], logged_in: bool) -> None:
    live(PROTOBUF_WIRE, batch, signed_in=logged_in)
