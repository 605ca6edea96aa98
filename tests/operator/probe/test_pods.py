"""The operator's Pod probe against a real worker process (``python -m resonance_worker``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from resonance_operator.probe.pods import PodProbe
from resonance_operator.probe.targets import DrainRequest, PodTarget
from resonance_operator.rollout import exposition, scrapes

from tests.harness.worker import API_KEY, WorkerProcess


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(tmp_path_factory.mktemp("probe"), name="probed").start()
    try:
        yield process
    finally:
        process.stop()


def _target(worker: WorkerProcess) -> PodTarget:
    return PodTarget("pod-a", "r1", "127.0.0.1", worker.port)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _request(**overrides: int) -> DrainRequest:
    values = {
        "budget_per_second": 50,
        "pods": 1,
        "pod_index": 0,
        "window_seconds": 1,
        "remaining_threshold": 0,
        "deadline_seconds": 30,
        "seed": 7,
    }
    values.update(overrides)
    return DrainRequest(**values)


async def test_scrape_parses_as_the_worker_renders_it(worker: WorkerProcess) -> None:
    probe = PodProbe(timeout=5)
    try:
        [(target, text)] = await probe.scrape_all([_target(worker)], "/metrics")
        assert target.name == "pod-a"
        samples = exposition.parse_exposition(text)
        assert any(s.name == scrapes.CONNECTIONS for s in samples)
        assert await probe.scrape(_target(worker), "/no-such-path") is None
        assert probe.calls["scrape:200"] == 1 and probe.calls["scrape:404"] == 1
    finally:
        await probe.close()


async def test_unreachable_pod_is_reported_not_raised() -> None:
    probe = PodProbe(timeout=1)
    target = PodTarget("gone", "r1", "127.0.0.1", _closed_port())
    try:
        assert await probe.scrape_all([target], "/metrics") == []
        assert await probe.drain_status(target, API_KEY) is None
        assert probe.calls["scrape:unreachable"] == 1 and probe.calls["drain_get:unreachable"] == 1
    finally:
        await probe.close()


async def test_drain_with_a_wrong_key_or_bad_request_is_refused(worker: WorkerProcess) -> None:
    probe = PodProbe(timeout=5)
    try:
        assert await probe.start_drain(_target(worker), "wrong-key", _request()) is None
        assert probe.calls["drain_post:401"] == 1
        # pod_index outside pods: the worker answers 400 and nothing starts.
        assert await probe.start_drain(_target(worker), API_KEY, _request(pods=1, pod_index=3)) is None
        status = await probe.drain_status(_target(worker), API_KEY)
        assert status is not None and status.draining is False
    finally:
        await probe.close()


async def test_drain_starts_once_and_reports_may_leave(tmp_path: Path) -> None:
    drained = WorkerProcess(tmp_path, name="drained").start()
    probe = PodProbe(timeout=5)
    target = PodTarget("pod-b", "r1", "127.0.0.1", drained.port)
    try:
        first = await probe.start_drain(target, API_KEY, _request())
        again = await probe.start_drain(target, API_KEY, _request())
        assert first is not None and first.draining and first.open_connections == 0
        assert again is not None and again.draining and again.may_leave  # no sockets: may go at once
        assert probe.calls["drain_post:202"] == 1 and probe.calls["drain_post:200"] == 1
        assert drained.http("GET", "/ready")[0] == 503
    finally:
        await probe.close()
        drained.stop()
