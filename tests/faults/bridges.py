"""A bridge served for the length of a block, for the bridge fault tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bridge.service import Bridge


@contextlib.asynccontextmanager
async def serving(bridge: Bridge) -> AsyncIterator[Bridge]:
    task = asyncio.create_task(bridge.serve())
    try:
        yield bridge
    finally:
        await bridge.close()
        await asyncio.wait_for(task, 30)
