"""Fixtures for the console's browser tests: a real worker serving its own console at ``/``, and
Debian's Chromium.

The console is built into the worker package (as ``make console`` does; skipped when the build there
already comes from the tree's sources) and the worker serves it from there. Videos for the fake camera
are generated here, never committed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.harness.browser import fake_camera_flags, launch
from tests.harness.console import PACKAGED, packaged_console
from tests.harness.worker import WorkerProcess
from tests.harness.y4m import Scene, write_y4m

# A thyroid that gets stressed at pain 3 and relaxes within seconds; one client address adds at most
# 0.75, so the pain comes from several (forwarded) addresses.
FAST_THYROID = {
    "RESONANCE_LIVING__THYROID_THRESHOLD": "3",
    "RESONANCE_LIVING__THYROID_OVERLOAD_FACTOR": "2",  # not the default 3: the bar reads it from the status
    "RESONANCE_LIVING__THYROID_HALF_LIFE_SECONDS": "2",
    "RESONANCE_LIVING__THYROID_MIN_DWELL_SECONDS": "1",
    "RESONANCE_LIVING__THYROID_EVALUATE_SECONDS": "0.2",
    "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
    "RESONANCE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
}
ROOMS = {"RESONANCE_LIVING__ROOM_CADENCE_SECONDS": "1", "RESONANCE_LIVING__ROOM_TICK_SECONDS": "0.5"}
CONSOLE_FLAGS = [
    {
        "name": "lobby-test",
        "variants": [{"name": "control", "weight": 50}, {"name": "question", "weight": 50}],
    }
]
"""The admin view shows the flags in force (issue 20)."""
VIEWPORT = {"width": 800, "height": 700}
HEART_RATE_BPM = 72.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def console_dist() -> Path:
    """The console build inside the worker package, up to date with web/."""
    if shutil.which("node") is None:
        pytest.fail("node is missing (the machine image provides it)")
    packaged_console()
    return PACKAGED


@pytest.fixture(scope="session")
def worker(console_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    workdir = tmp_path_factory.mktemp("console-worker")
    flags = workdir / "features.json"
    flags.write_text(json.dumps(CONSOLE_FLAGS))
    process = WorkerProcess(
        workdir,
        {"RESONANCE_DEV_MODE": "true", **FAST_THYROID, **ROOMS, "RESONANCE_FEATURES_FILE": str(flags)},
        name="console",
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def console(worker: WorkerProcess) -> str:
    """The console's address: the worker's own ``/``."""
    return worker.base_url + "/"


@pytest.fixture(scope="module")
def fresh_console(
    console_dist: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, WorkerProcess]]:
    """A worker nothing has hurt yet (no pain, no insights) serving its console: pages that look the
    same every run."""
    process = WorkerProcess(
        tmp_path_factory.mktemp("fresh-worker"), {"RESONANCE_DEV_MODE": "true"}, name="fresh"
    )
    process.start()
    try:
        yield process.base_url + "/", process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("videos")
    return {
        "pulse": write_y4m(directory / "face-72bpm.y4m", Scene(bpm=HEART_RATE_BPM)),
        "still": write_y4m(directory / "face-no-pulse.y4m", Scene(bpm=None)),
    }


# Module scope, not session: while Playwright's sync API is started its event loop counts as running in this
# thread, so every asyncio test collected after this module would fail ("Runner.run() cannot be called from
# a running event loop"). Stopping it when the module ends gives the thread back.
@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(pw: Playwright) -> Iterator[Browser]:
    """Chromium without a camera (the fake-camera browsers are launched per video)."""
    chromium = launch(pw)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def camera_browser(pw: Playwright, videos: dict[str, Path]) -> Iterator[dict[str, Browser]]:
    opened: dict[str, Browser] = {}

    class Lazy(dict[str, Browser]):
        def __missing__(self, name: str) -> Browser:
            opened[name] = launch(pw, *fake_camera_flags(videos[name]))
            return opened[name]

    try:
        yield Lazy()
    finally:
        for chromium in opened.values():
            chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=VIEWPORT, reduced_motion="reduce")
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def axe_page(browser: Browser) -> Iterator[Page]:
    """A page that lets the test inject axe-core: the console's Content-Security-Policy allows only its
    own scripts, so this context bypasses it (the other tests run under it)."""
    ctx = browser.new_context(viewport=VIEWPORT, reduced_motion="reduce", bypass_csp=True)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()
