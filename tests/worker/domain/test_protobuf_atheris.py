"""The protobuf atheris target (``atheris_protobuf.py``) run for a bounded number of inputs, seeded with
one valid frame of every command: libFuzzer mutates from there, guided by coverage of the decoder and
the session, and any exception or broken invariant is a crash (exit code not 0, the input saved)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jwt
from resonance_worker.domain import client_pb2 as pb
from resonance_worker.domain.protobuf import delimited

from tests.worker.domain.session_fuzzing import SECRET

ROOT = Path(__file__).resolve().parents[3]
RUNS = 10_000

SEEDS = [
    pb.Command(
        id=1, connect=pb.ConnectRequest(token=jwt.encode({"sub": "alice"}, SECRET, "HS256"), name="fuzz")
    ),
    pb.Command(id=2, subscribe=pb.SubscribeRequest(channel="chat:x", recover=True, offset=3, epoch="e")),
    pb.Command(id=3, publish=pb.PublishRequest(channel="chat:x", data=b'{"text":"hi"}')),
    pb.Command(
        id=4,
        history=pb.HistoryRequest(channel="chat:x", limit=10, since=pb.StreamPosition(offset=1, epoch="e")),
    ),
    pb.Command(id=5, presence=pb.PresenceRequest(channel="chat:x")),
    pb.Command(id=6, presence_stats=pb.PresenceStatsRequest(channel="chat:x")),
    pb.Command(id=7, rpc=pb.RPCRequest(method="echo", data=b"[1,2]")),
    pb.Command(id=8, unsubscribe=pb.UnsubscribeRequest(channel="chat:x")),
    pb.Command(id=9, refresh=pb.RefreshRequest(token="t")),
    pb.Command(id=10, sub_refresh=pb.SubRefreshRequest(channel="chat:x", token="t")),
    pb.Command(send=pb.SendRequest(data=b"{}")),
    pb.Command(),
]


def test_atheris_finds_nothing_in_bounded_runs(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    tail_command = delimited(pb.Command(id=20, rpc=pb.RPCRequest(method="x")))
    for index, seed in enumerate(SEEDS):
        frames = delimited(seed) + b"\x1e\x1e" + tail_command
        for signed_in in (0, 1):
            (corpus / f"seed-{index}-{signed_in}").write_bytes(bytes([signed_in]) + frames)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.worker.domain.atheris_protobuf",
            f"-runs={RUNS}",
            "-seed=1",
            "-max_len=4096",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    tail = "\n".join(result.stderr.splitlines()[-40:])
    assert result.returncode == 0, tail
    assert f"Done {RUNS} runs" in result.stderr, tail
    assert not list(tmp_path.glob("crash-*")), tail
