"""Logging set-up: structured JSON lines (one object per line) or human-readable lines, both with
every structured field.

A connection's log lines carry its ``client`` id, its ``user`` (once connected) and, when the line is
written inside a span, the ``trace_id``: :func:`bind_connection` starts the connection's fields in
its handler task (the tasks it spawns inherit them), :func:`bind_user` adds the user after the
connect, and the handler's :class:`ContextFilter` puts them on every record that does not name them
itself. The human format writes the same fields after the message as ``key=value``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any

from resonance_worker.tracing import current_trace_id

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_connection: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "resonance_log_connection", default=None
)


def bind_connection(client: str) -> None:
    """From here on in this task (and the tasks it starts), log lines carry ``client``."""
    _connection.set({"client": client})


def bind_user(user: str) -> None:
    """The bound connection's user, now known (shared with every task of that connection)."""
    fields = _connection.get()
    if fields is not None and user:
        fields["user"] = user


class ContextFilter(logging.Filter):
    """Adds the connection's fields and the current trace id to records that lack them."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _connection.get()
        if fields is not None:
            for key, value in fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        if not hasattr(record, "trace_id"):
            trace_id = current_trace_id()
            if trace_id is not None:
                record.trace_id = trace_id
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value for key, value in vars(record).items() if key not in _RESERVED and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra`` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text


class HumanFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value …``: the structured fields kept, values with spaces
    quoted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the fields
        pairs = " ".join(f"{key}={_text(value)}" for key, value in fields.items())
        return f"{head} {pairs}{newline}{rest}"


def configure_logging(level: str, *, json_lines: bool) -> None:
    """Configure the root logger once, at start-up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else HumanFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
