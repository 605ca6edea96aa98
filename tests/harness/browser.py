"""Debian's Chromium driven by Playwright (Python), with the flags this machine needs.

Playwright cannot download its own browser here, so it drives ``/usr/bin/chromium`` (the Debian package,
installed by ``.ci/deps``). Playwright documents a foreign executable as "at your own risk": version skew
shows up as protocol errors, so the Python package is pinned to the release whose bundled Chromium has
the same major version as Debian's, and ``check_versions`` refuses to run on a mismatch, naming both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import playwright
from playwright.sync_api import Browser, Playwright

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying Google's hosts, refused on this network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def fake_camera_flags(video: Path) -> list[str]:
    """The fake capture device playing ``video`` (absolute .y4m), permission granted without a prompt."""
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video.resolve()}",
    ]


def bundled_chromium_version() -> str:
    """The Chromium version this Playwright release was built and tested against."""
    browsers = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    entries = json.loads(browsers.read_text())["browsers"]
    return str(next(b["browserVersion"] for b in entries if b["name"] == "chromium"))


class VersionMismatchError(RuntimeError):
    pass


def check_versions(browser: Browser) -> str:
    """Fail unless Debian's Chromium and Playwright's bundled one share a major version."""
    running = browser.version
    expected = bundled_chromium_version()
    if running.split(".")[0] != expected.split(".")[0]:
        raise VersionMismatchError(
            f"Chromium {running} (Debian's {CHROMIUM}) does not match Playwright's bundled Chromium "
            f"{expected}: pin the playwright release whose browser has major {running.split('.')[0]}"
        )
    return running


def launch(pw: Playwright, *extra: str, **options: Any) -> Browser:
    """Headless Debian Chromium with a fresh profile (Playwright makes one per launch)."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} is missing: run .ci/deps (apt-get install chromium)")
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *extra], **options)
    check_versions(browser)
    return browser
