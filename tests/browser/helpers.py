"""What the browser tests do to a page, and how they judge screenshots and accessibility."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from pathlib import Path
from typing import Any

import centrifuge
import numpy as np
from PIL import Image
from playwright.sync_api import Locator, Page

from tests.harness.console import WEB
from tests.harness.worker import WorkerProcess

BASELINES = Path(__file__).parent / "baselines"
AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"
# A pixel differs when a channel moved more than this (anti-aliasing moves a few levels);
# a screenshot matches while at most MAX_DIFF_RATIO of its pixels differ.
PIXEL_TOLERANCE = 32
MAX_DIFF_RATIO = 0.01


def sign_in(page: Page, base_url: str, worker: WorkerProcess, user: str, view: str = "") -> None:
    """Open the console with a token in the fragment and wait until it is connected."""
    page.goto(f"{base_url}#token={worker.token(user)}")
    page.wait_for_selector("[data-testid=connection-state][data-state=connected]", timeout=15_000)
    if view:
        go(page, view)


def go(page: Page, view: str) -> None:
    page.evaluate("view => { location.hash = '#/' + view }", view)
    page.wait_for_selector(f"nav a[data-view={view}][aria-current=page]")


def compare_screenshot(png: bytes, name: str) -> tuple[float, Path]:
    """The share of pixels that differ from the committed baseline (written when updating)."""
    baseline = BASELINES / f"{name}.png"
    if os.environ.get("RESONANCE_UPDATE_BASELINES") == "1":
        BASELINES.mkdir(exist_ok=True)
        Image.open(io.BytesIO(png)).convert("RGB").save(baseline, optimize=True)
    if not baseline.exists():
        raise AssertionError(f"no baseline {baseline}: run with RESONANCE_UPDATE_BASELINES=1 and look at it")
    got = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    want = np.asarray(Image.open(baseline).convert("RGB"), dtype=np.int16)
    if got.shape != want.shape:
        return 1.0, baseline
    differs = np.abs(got - want).max(axis=2) > PIXEL_TOLERANCE
    return float(differs.mean()), baseline


def screenshot(page: Page, *masked: Locator) -> bytes:
    return page.screenshot(full_page=True, animations="disabled", caret="hide", mask=list(masked))


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core (from web/node_modules) run in the page: the serious and critical violations."""
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def hurt_through_the_server_api(worker: WorkerProcess, addresses: int) -> None:
    """Connect one client (one user) from each of ``addresses`` forwarded addresses, then disconnect
    each through the server API with 3500 (invalid token): each close is auth-failure pain, at most a
    quarter of the threshold per address and per user, so several of them stress the thyroid."""

    async def run() -> None:
        clients = []
        for n in range(addresses):
            client = centrifuge.Client(
                worker.ws_url,
                token=worker.token(f"victim-{n}"),
                headers={"X-Forwarded-For": f"198.51.100.{n + 1}"},
            )
            await client.connect()
            await client.ready(timeout=10)
            clients.append(client)
        for n in range(addresses):
            status, body = await asyncio.to_thread(
                worker.api, "disconnect", {"user": f"victim-{n}", "code": 3500, "reason": "injected"}
            )
            assert status == 200, body
        await asyncio.sleep(0.5)
        for client in clients:
            await client.disconnect()

    errors: list[BaseException] = []

    def thread() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    runner = threading.Thread(target=thread)
    runner.start()
    runner.join(30)
    if errors:
        raise errors[0]
