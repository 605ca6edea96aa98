"""The Dockerfile subset the images use, parsed into stages (pure: text in, values out).

Supported: ``# syntax=`` and other comments, ``\\`` line continuations, ``ARG`` (before the first
``FROM``, substituted into ``FROM``), ``FROM image [AS name]``, ``RUN`` (shell form), ``COPY
[--from=stage-or-image] src... dest``, ``ENV k=v...``, ``USER``, ``WORKDIR``, ``EXPOSE``,
``ENTRYPOINT`` and ``CMD`` (exec form). Anything else raises :class:`DockerfileError` naming the line,
so the daemonless build never silently skips an instruction Docker would carry out.

``ENV`` values see ``$VAR`` and ``${VAR}`` of the stage's environment so far, starting from the base
image's (``BASE_ENV``: the Debian image's ``PATH``).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

# The environment every Debian base image starts with (docker inspect debian:bookworm-slim).
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_METADATA = {"ENV", "USER", "WORKDIR", "EXPOSE", "ENTRYPOINT", "CMD"}


class DockerfileError(ValueError):
    """The Dockerfile uses something outside the supported subset, or is malformed."""


@dataclass(frozen=True)
class Instruction:
    """One instruction: ``kind`` upper-case, ``text`` as written (joined continuation lines)."""

    kind: str
    text: str
    line: int
    args: tuple[str, ...] = ()
    flags: tuple[tuple[str, str], ...] = ()

    @property
    def is_metadata(self) -> bool:
        """True for instructions that change only the image config, never the filesystem."""
        return self.kind in _METADATA

    def flag(self, name: str) -> str | None:
        return dict(self.flags).get(name)


@dataclass
class Config:
    """The image config a stage's metadata instructions build up (OCI ``config`` field names)."""

    env: dict[str, str] = field(default_factory=lambda: dict(BASE_ENV))
    user: str = ""
    workdir: str = "/"
    exposed_ports: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)

    def apply(self, instruction: Instruction) -> None:
        """Fold one metadata instruction into the config (ignores filesystem instructions)."""
        kind, args = instruction.kind, instruction.args
        if kind == "ENV":
            for pair in args:
                key, _, value = pair.partition("=")
                self.env[key] = substitute(value, self.env)
        elif kind == "USER":
            self.user = args[0]
        elif kind == "WORKDIR":
            self.workdir = args[0]
        elif kind == "EXPOSE":
            self.exposed_ports.extend(p if "/" in p else f"{p}/tcp" for p in args)
        elif kind == "ENTRYPOINT":
            self.entrypoint = list(args)
        elif kind == "CMD":
            self.cmd = list(args)

    def env_list(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.env.items()]


@dataclass(frozen=True)
class Stage:
    """``FROM base AS name`` and its instructions, in order."""

    base: str
    name: str
    index: int
    instructions: tuple[Instruction, ...]

    def config(self) -> Config:
        """The config after every metadata instruction of this stage."""
        config = Config()
        for instruction in self.instructions:
            config.apply(instruction)
        return config


def substitute(value: str, env: dict[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` from ``env`` (unknown variables become empty, as in Docker)."""
    return _VAR.sub(lambda m: env.get(m.group("braced") or m.group("plain") or "", ""), value)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped, as Docker does
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        lines.append((start, " ".join(part for part in buffer if part)))
        buffer = []
    if buffer:
        raise DockerfileError(f"line {start}: a continuation runs past the end of the file")
    return lines


def _exec_form(kind: str, rest: str, line: int) -> tuple[str, ...]:
    try:
        value = json.loads(rest)
    except json.JSONDecodeError as exc:
        raise DockerfileError(f"line {line}: {kind} must use the exec form (a JSON array)") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DockerfileError(f"line {line}: {kind} must be a JSON array of strings")
    return tuple(value)


def _instruction(kind: str, rest: str, line: int) -> Instruction:
    text = f"{kind} {rest}"
    if kind == "RUN":
        if rest.startswith("["):
            raise DockerfileError(f"line {line}: RUN must use the shell form")
        return Instruction(kind, text, line, (rest,))
    if kind in {"ENTRYPOINT", "CMD"}:
        return Instruction(kind, text, line, _exec_form(kind, rest, line))
    if kind not in {"COPY", "ENV", "USER", "WORKDIR", "EXPOSE"}:
        raise DockerfileError(f"line {line}: {kind} is not supported by the daemonless build")
    words = shlex.split(rest)
    flags = tuple((w[2:].partition("=")[0], w.partition("=")[2]) for w in words if w.startswith("--"))
    args = tuple(w for w in words if not w.startswith("--"))
    if kind == "COPY":
        unknown = {name for name, _ in flags} - {"from"}
        if unknown or len(args) < 2:
            raise DockerfileError(f"line {line}: COPY [--from=X] src... dest, got {rest!r}")
    elif kind == "ENV":
        if not args or not all("=" in a for a in args):
            raise DockerfileError(f"line {line}: ENV must be key=value pairs")
    elif kind in {"USER", "WORKDIR"} and len(args) != 1:
        raise DockerfileError(f"line {line}: {kind} takes one argument")
    return Instruction(kind, text, line, args, flags)


def parse(text: str, build_args: dict[str, str] | None = None) -> list[Stage]:
    """Parse a Dockerfile into its stages; ``build_args`` override ``ARG`` defaults."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    current: tuple[str, str, int] | None = None
    body: list[Instruction] = []
    for line, logical in _logical_lines(text):
        kind, _, rest = logical.partition(" ")
        kind, rest = kind.upper(), rest.strip()
        if kind == "ARG":
            if current is not None:
                raise DockerfileError(f"line {line}: ARG inside a stage is not supported")
            name, _, default = rest.partition("=")
            args[name] = (build_args or {}).get(name, default)
            continue
        if kind == "FROM":
            if current is not None:
                stages.append(Stage(current[0], current[1], current[2], tuple(body)))
            words = rest.split()
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
                raise DockerfileError(f"line {line}: FROM image [AS name], got {rest!r}")
            base = substitute(words[0], args)
            current = (base, words[2] if len(words) == 3 else str(len(stages)), len(stages))
            body = []
            continue
        if current is None:
            raise DockerfileError(f"line {line}: {kind} before the first FROM")
        body.append(_instruction(kind, rest, line))
    if current is None:
        raise DockerfileError("no FROM: not a Dockerfile")
    stages.append(Stage(current[0], current[1], current[2], tuple(body)))
    return stages
