"""The harness's S3 server is real S3Proxy: it answers the S3 REST API and checks signatures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.harness.s3 import S3Server


async def test_s3proxy_serves_the_s3_api_and_refuses_unsigned_requests(tmp_path: Path) -> None:
    server = await asyncio.to_thread(S3Server(tmp_path / "s3").start)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{server.endpoint}/backups") as response:
                assert response.status == 403, await response.text()
                assert "AccessDenied" in await response.text()
            async with http.get(f"{server.endpoint}/") as response:
                assert response.status == 403
        assert list(server.blobs.iterdir()) == []  # nothing was created by the refused request
    finally:
        server.stop()
