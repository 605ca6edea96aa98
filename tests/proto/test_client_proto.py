"""proto/resonance/client.proto: the committed Python module is what protoc makes of it today, and its
field numbers and types are the public specification's, checked against the upstream schema compiled into
the official centrifuge-python SDK (``centrifuge.protocol.client_pb2``) and on the wire both ways."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from centrifuge.protocol import client_pb2 as upstream
from google.protobuf import descriptor
from google.protobuf.internal import api_implementation
from resonance_worker.domain import client_pb2 as ours

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen-proto"
TARGET = Path("worker/resonance_worker/domain/client_pb2.py")


def gen_proto(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "gen-proto"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_committed_module_is_what_protoc_generates_now() -> None:
    done = gen_proto(REPO, "--check")
    assert done.returncode == 0, done.stderr


def test_check_fails_when_the_schema_changed_and_regenerating_fixes_it(tmp_path: Path) -> None:
    for part in ("scripts/gen-proto", "proto", str(TARGET), str(TARGET.with_suffix(".pyi"))):
        source, copy = REPO / part, tmp_path / part
        copy.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, copy)
    proto = tmp_path / "proto" / "resonance" / "client.proto"
    added = "bool temporary = 3;\n  string hint = 4;"
    proto.write_text(proto.read_text().replace("bool temporary = 3;", added))
    stale = gen_proto(tmp_path, "--check")
    assert stale.returncode == 1
    assert "stale: worker/resonance_worker/domain/client_pb2.py" in stale.stderr
    assert gen_proto(tmp_path).returncode == 0
    assert gen_proto(tmp_path, "--check").returncode == 0
    assert b"hint" in (tmp_path / TARGET).read_bytes()


def test_runtime_is_upb() -> None:
    assert api_implementation.Type() == "upb"


def _messages(file: descriptor.FileDescriptor) -> dict[str, descriptor.Descriptor]:
    found: dict[str, descriptor.Descriptor] = {}

    def walk(prefix: str, message: descriptor.Descriptor) -> None:
        found[prefix + message.name] = message
        for nested in message.nested_types:
            walk(prefix + message.name + ".", nested)

    for message in file.message_types_by_name.values():
        walk("", message)
    return found


OURS = _messages(ours.DESCRIPTOR)
UPSTREAM = _messages(upstream.DESCRIPTOR)


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_field_has_the_public_number_and_type(name: str) -> None:
    assert name in UPSTREAM, f"{name} is not a message of the public schema"
    theirs = {f.number: f for f in UPSTREAM[name].fields}
    for field in OURS[name].fields:
        assert field.number in theirs, f"{name}.{field.name} = {field.number} is not in the public schema"
        public = theirs[field.number]
        assert (field.name, field.type, field.is_repeated) == (public.name, public.type, public.is_repeated)
        if field.message_type is not None:
            assert field.message_type.name == public.message_type.name


def test_commands_and_replies_cover_every_public_request_and_result() -> None:
    for name in ("Command", "Reply", "Push"):
        public = {f.number for f in UPSTREAM[name].fields}
        # Push.id (1): numeric channel ids, which the worker never announces (the SDKs read Push.channel).
        expected = public - ({1} if name == "Push" else set())
        assert {f.number for f in OURS[name].fields} == expected


def test_bytes_cross_both_ways() -> None:
    command = ours.Command(
        id=7,
        subscribe=ours.SubscribeRequest(
            channel="chat:room", recover=True, epoch="e1", offset=2**40, positioned=True, flag=1
        ),
    )
    theirs = upstream.Command.FromString(command.SerializeToString())
    assert (theirs.id, theirs.subscribe.channel, theirs.subscribe.offset) == (7, "chat:room", 2**40)
    assert theirs.subscribe.recover and theirs.subscribe.flag == 1
    reply = upstream.Reply(
        push=upstream.Push(
            channel="chat:room",
            pub=upstream.Publication(
                data=b'{"x":1}',
                offset=3,
                info=upstream.ClientInfo(user="u", client="c"),
                tags={"k": "v"},
            ),
        )
    )
    back = ours.Reply.FromString(reply.SerializeToString())
    assert back.push.pub.data == b'{"x":1}' and back.push.pub.info.user == "u"
    assert dict(back.push.pub.tags) == {"k": "v"} and back.push.pub.offset == 3
    # The ping is an empty Reply: zero bytes of message, one byte of length prefix on the wire.
    assert ours.Reply().SerializeToString() == b""
