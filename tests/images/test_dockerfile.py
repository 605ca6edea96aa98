"""The Dockerfile subset parser (pure) on small texts and on the two real Dockerfiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from images import dockerfile

ROOT = Path(__file__).resolve().parents[2]


def test_stages_args_and_continuations() -> None:
    text = """# syntax=docker/dockerfile:1.7
ARG BASE=debian:bookworm-slim
FROM ${BASE} AS build
RUN echo a \\
    # a comment inside the continuation is dropped
    && echo b
FROM $BASE
COPY --from=build /x /y
ENV A=1 PATH=/opt/bin:$PATH B=${A}2
USER 10001:10001
EXPOSE 80 53/udp
ENTRYPOINT ["prog", "--flag"]
"""
    build, final = dockerfile.parse(text, {"BASE": "debian:trixie-slim"})
    assert (build.name, build.base, final.name, final.base) == (
        "build",
        "debian:trixie-slim",
        "1",
        "debian:trixie-slim",
    )
    assert build.instructions[0].args == ("echo a && echo b",)
    copy = final.instructions[0]
    assert (copy.kind, copy.flag("from"), copy.args, copy.is_metadata) == (
        "COPY",
        "build",
        ("/x", "/y"),
        False,
    )
    config = final.config()
    assert config.env["PATH"] == "/opt/bin:" + dockerfile.BASE_ENV["PATH"]
    assert config.env["B"] == "12"
    assert config.user == "10001:10001"
    assert config.exposed_ports == ["80/tcp", "53/udp"]
    assert config.entrypoint == ["prog", "--flag"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RUN x", "before the first FROM"),
        ("FROM a\nHEALTHCHECK CMD x", "HEALTHCHECK is not supported"),
        ('FROM a\nRUN ["x"]', "shell form"),
        ("FROM a\nENTRYPOINT prog", "exec form"),
        ("FROM a\nCOPY --chown=1 a b", r"COPY \[--from=X\]"),
        ("FROM a\nENV A", "key=value"),
        ("FROM a\nRUN x \\", "past the end"),
        ("FROM a b", r"FROM image \[AS name\]"),
        ("# nothing", "no FROM"),
    ],
)
def test_outside_the_subset_is_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(dockerfile.DockerfileError, match=message):
        dockerfile.parse(text)


@pytest.mark.parametrize("name", ["worker", "operator"])
def test_the_images_run_as_10001_with_their_console_script(name: str) -> None:
    stages = dockerfile.parse((ROOT / f"Dockerfile.{name}").read_text())
    config = stages[-1].config()
    assert config.user == "10001:10001"
    assert config.entrypoint == [f"resonance-{name}"]
    assert config.env["PATH"].startswith("/app/.venv/bin:")
