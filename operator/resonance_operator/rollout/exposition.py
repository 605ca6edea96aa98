"""The Prometheus text exposition format (version 0.0.4), read into samples.

Pure: :func:`parse_exposition` takes the text a worker's ``/metrics`` answered and
returns its samples, or raises :class:`ExpositionError` for a line it cannot read.
The caller decides what a bad scrape means (the rollout pass skips that Pod).
"""

from __future__ import annotations

import dataclasses
import math
import re

Labels = tuple[tuple[str, str], ...]


class ExpositionError(ValueError):
    """A line of the text exposition format could not be read."""


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def parse_value(text: str, line_number: int) -> float:
    """A sample value, including ``+Inf``, ``-Inf`` and ``NaN`` (also a bucket's ``le``)."""
    special = {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise ExpositionError(f"line {line_number}: bad value {text!r}") from None


def _skip_blanks(line: str, i: int) -> int:
    while i < len(line) and line[i] in " \t":
        i += 1
    return i


def _parse_labels(line: str, start: int, line_number: int) -> tuple[Labels, int]:
    """Labels from just after ``{``; returns them and the index after ``}``."""
    labels: list[tuple[str, str]] = []
    i = start
    while True:
        i = _skip_blanks(line, i)
        if i < len(line) and line[i] == "}":
            return tuple(sorted(labels)), i + 1
        match = _LABEL_NAME.match(line, i)
        if match is None:
            raise ExpositionError(f"line {line_number}: bad label name at column {i + 1}")
        key = match.group()
        # Blanks around "=" are allowed, as in Prometheus' own text parser.
        i = _skip_blanks(line, match.end())
        if line[i : i + 1] != "=":
            raise ExpositionError(f'line {line_number}: expected =" after label {key!r}')
        i = _skip_blanks(line, i + 1)
        if line[i : i + 1] != '"':
            raise ExpositionError(f'line {line_number}: expected =" after label {key!r}')
        i += 1
        chars: list[str] = []
        while True:
            if i >= len(line):
                raise ExpositionError(f"line {line_number}: unterminated value of label {key!r}")
            char = line[i]
            if char == "\\":
                escaped = line[i + 1 : i + 2]
                if escaped not in _ESCAPES:
                    raise ExpositionError(f"line {line_number}: bad escape in label {key!r}")
                chars.append(_ESCAPES[escaped])
                i += 2
            elif char == '"':
                i += 1
                break
            else:
                chars.append(char)
                i += 1
        labels.append((key, "".join(chars)))
        i = _skip_blanks(line, i)
        if i < len(line) and line[i] == ",":
            i += 1
        elif i >= len(line) or line[i] != "}":
            raise ExpositionError(f"line {line_number}: expected , or }} after label {key!r}")


def parse_exposition(text: str) -> tuple[Sample, ...]:
    """Samples of a Prometheus text exposition (version 0.0.4).

    Comments (``# HELP``, ``# TYPE``) and blank lines are skipped; a timestamp
    after the value is accepted and ignored (the scrape time is the caller's).

    >>> parse_exposition('# TYPE x counter\\nx_total{code="1",m="a\\\\"b"} 3\\n')
    (Sample(name='x_total', labels=(('code', '1'), ('m', 'a"b')), value=3.0),)
    """
    samples: list[Sample] = []
    # Lines end with "\n" only: splitlines() would also split inside label values at \x85 or U+2028.
    for line_number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        match = _NAME.match(line)
        if match is None:
            raise ExpositionError(f"line {line_number}: bad metric name")
        name = match.group()
        i = match.end()
        labels: Labels = ()
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i + 1, line_number)
        rest = line[i:].split()
        if not rest or len(rest) > 2 or (i < len(line) and line[i] not in " \t"):
            raise ExpositionError(f"line {line_number}: expected a value after {name!r}")
        samples.append(Sample(name, labels, parse_value(rest[0], line_number)))
    return tuple(samples)
