"""A real Centrifugo v6.9.1 (built once from the Go module proxy and cached) for the load tool's tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.centrifugo.config import Engine
from bench.load.scenario import Target
from bench.load.servers import Stack, centrifugo_binary


@pytest.fixture(scope="session")
def centrifugo_built() -> Path:
    if shutil.which("go") is None and not Path.home().joinpath(".cache/resonance-liminal/bin").exists():
        pytest.fail("Go is needed to build Centrifugo (bench/centrifugo/build)")
    return centrifugo_binary()


@pytest.fixture(scope="session")
def centrifugo_stack(tmp_path_factory: pytest.TempPathFactory, centrifugo_built: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("centrifugo"), cpus=None)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def centrifugo_memory(centrifugo_stack: Stack) -> Target:
    return centrifugo_stack.start_centrifugo(Engine.MEMORY)
