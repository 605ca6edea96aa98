"""Drive the official npm ``centrifuge`` SDK from async tests: in Node (``tests/js/client.mjs``), in JSON
or in its protobuf build (``centrifuge/build/protobuf``), or in headless Chromium (``tests/js/browser.mjs``,
the protobuf build bundled into a page). The line protocol is :mod:`tests.harness.sdkclient`'s."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from tests.harness.sdkclient import SdkClient, SdkClientError

JS_DIR = Path(__file__).resolve().parents[1] / "js"
CHROMIUM = "/usr/bin/chromium"

JsClientError = SdkClientError


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "centrifuge").exists():
        raise RuntimeError("Node or tests/js/node_modules missing: run `make deps`")
    return node


class JsClient(SdkClient):
    """One centrifuge-js client in a Node process; ``protocol`` is ``"json"`` or ``"protobuf"``;
    ``script`` names another driver in tests/js (it gets the protocol as its first argument)."""

    def __init__(
        self, protocol: str = "json", *, script: str = "client.mjs", node_args: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        if protocol not in ("json", "protobuf"):
            raise ValueError(f"protocol must be json or protobuf, got {protocol!r}")
        self.protocol = protocol
        self.script = script
        self.node_args = node_args
        self.name = f"centrifuge-js ({protocol}, Node, {script})"

    def command(self) -> tuple[Sequence[str], Path]:
        return [_node(), *self.node_args, str(JS_DIR / self.script), self.protocol], JS_DIR


class BrowserClient(SdkClient):
    """centrifuge-js's protobuf build in a page of headless Debian Chromium, driven through playwright-core.

    The page is served from its own loopback origin (``page_origin`` once started; ``port`` fixes its port,
    0 takes any free one), so a worker must allow that origin for the handshake to pass."""

    name = "centrifuge-js (protobuf, Chromium)"
    page_origin = ""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self.port = port

    async def start(self) -> BrowserClient:
        await super().start()
        page = await self.wait_for(lambda e: e.get("event") == "page", what="the page")
        self.page_origin = page["origin"]
        return self

    def command(self) -> tuple[Sequence[str], Path]:
        if not Path(CHROMIUM).exists():
            raise RuntimeError(f"{CHROMIUM} missing: run `make deps` (Debian package chromium)")
        if not (JS_DIR / "node_modules" / "playwright-core").exists():
            raise RuntimeError("tests/js/node_modules/playwright-core missing: run `make deps`")
        return [_node(), str(JS_DIR / "browser.mjs"), CHROMIUM, str(self.port)], JS_DIR
