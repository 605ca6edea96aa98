"""Background tasks that live as long as the application: started when it starts, cancelled at cleanup."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web


def run_in_background(app: web.Application, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work()`` as a task named ``name`` from the app's start-up (after what was registered
    before it, the storage included) until its cleanup, which cancels it and waits for it to end."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(work(), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(lifecycle)
