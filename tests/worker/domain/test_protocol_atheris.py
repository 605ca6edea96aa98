"""The atheris target (``atheris_session.py``) run for a bounded number of inputs, seeded with one
valid frame of every command: libFuzzer mutates from there, guided by coverage of the session's
code, and any exception or broken invariant is a crash (exit code not 0, the input saved)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jwt

from tests.worker.domain.session_fuzzing import SECRET

ROOT = Path(__file__).resolve().parents[3]
RUNS = 20_000

SEEDS = [
    {"id": 1, "connect": {"token": jwt.encode({"sub": "alice"}, SECRET, "HS256"), "name": "fuzz"}},
    {"id": 2, "subscribe": {"channel": "chat:x", "recover": True, "offset": 3, "epoch": "e"}},
    {"id": 3, "publish": {"channel": "chat:x", "data": {"text": "hi"}}},
    {"id": 4, "history": {"channel": "chat:x", "limit": 10, "since": {"offset": 1, "epoch": "e"}}},
    {"id": 5, "presence": {"channel": "chat:x"}},
    {"id": 6, "presence_stats": {"channel": "chat:x"}},
    {"id": 7, "rpc": {"method": "echo", "data": [1, 2]}},
    {"id": 8, "unsubscribe": {"channel": "chat:x"}},
    {"id": 9, "refresh": {"token": "t"}},
    {"id": 10, "sub_refresh": {"channel": "chat:x", "token": "t"}},
    {"id": 11, "send": {"data": {}}},
    {},
]


def test_atheris_finds_nothing_in_bounded_runs(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(SEEDS):
        frames = json.dumps(seed) + "\x1e" + json.dumps({"id": 20, "rpc": {"method": "x"}})
        for signed_in in (0, 1):
            (corpus / f"seed-{index}-{signed_in}").write_bytes(bytes([signed_in]) + frames.encode())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.worker.domain.atheris_session",
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
