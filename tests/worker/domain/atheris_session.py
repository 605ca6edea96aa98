"""A coverage-guided fuzz target (atheris, libFuzzer) over the frame parser and the session's command
handlers, with the same invariants as the hypothesis fuzz in ``test_protocol_fuzz.py``: nothing
raises; every reply is a JSON object and every error code and close code is a documented one; a
closed session stays silent.

Each input is one connection's life: the first byte says whether it signs in first; the rest is
text (UTF-8, lone surrogates allowed) cut into frames at ``\\x1e``, each received, its operations
answered as the node would when the engine is away, the timers run, and the output checked.

Run by ``test_protocol_atheris.py`` with a bounded number of runs; by hand:

    .venv/bin/python -m tests.worker.domain.atheris_session -runs=100000 [corpus_dir]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["resonance_worker"]):
    from resonance_worker.domain.protocol import ProtocolViolationError, parse_frame

    from tests.worker.domain.session_fuzzing import live
    from tests.worker.domain.test_protocol_fuzz import JSON_WIRE

SEPARATOR = "\x1e"
MAX_FRAMES = 6


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def one_connection(data: bytes) -> None:
    if not data:
        return
    frames = decode(data[1:]).split(SEPARATOR)[:MAX_FRAMES]
    for frame in frames:
        try:
            parsed = parse_frame(frame)
        except ProtocolViolationError:
            parsed = None
        assert parsed is None or all(isinstance(c.params, dict) for c in parsed)
    live(JSON_WIRE, frames, signed_in=bool(data[0] & 1))


def main() -> None:
    atheris.Setup(sys.argv, one_connection)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
