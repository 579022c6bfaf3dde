"""Fixtures of the fault suite; the servers are the session's dev stack (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from core.settings import Settings


@pytest.fixture
async def redis_client(make_settings: Callable[..., Settings]) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(make_settings().redis_url)
    yield client
    await client.aclose()
