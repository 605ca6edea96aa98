"""A coverage-guided fuzz target (atheris, libFuzzer) over the protobuf decoder and a session speaking
protobuf, with the invariants of ``test_protobuf_fuzz.py``: nothing raises; every frame written is
length-delimited Replies with documented error codes; every close code is a documented one; a closed
session stays silent.

Each input is one connection's life: the first byte says whether it signs in first; the rest is cut into
binary frames at ``\\x1e\\x1e``, each received, its operations answered as the node would when the engine
is away, the timers run, and the output checked.

Run by ``test_protobuf_atheris.py`` with a bounded number of runs; by hand:

    .venv/bin/python -m tests.worker.domain.atheris_protobuf -runs=100000 [corpus_dir]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["resonance_worker"]):
    from tests.worker.domain.session_fuzzing import live
    from tests.worker.domain.test_protobuf_fuzz import PROTOBUF_WIRE

SEPARATOR = b"\x1e\x1e"
MAX_FRAMES = 6


def one_connection(data: bytes) -> None:
    if not data:
        return
    live(PROTOBUF_WIRE, data[1:].split(SEPARATOR)[:MAX_FRAMES], signed_in=bool(data[0] & 1))


def main() -> None:
    atheris.Setup(sys.argv, one_connection)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
