"""Redis with a password (a real Valkey/redis-server started with --requirepass)."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ResponseError

from app.configs import bridge_config
from bridge.service import Bridge
from devtools.devstack import free_port, redis_binary, wait_for_port
from devtools.processes import dies_with_parent
from tests.integration.cluster import Cluster, http_json, wait_ready

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[tuple[str, str]]:
    """(password-free URL, password) of a Redis that refuses clients without the password."""
    password = secrets.token_urlsafe(16)
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="frame-redis-auth-")
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", workdir, "--requirepass", password, "--loglevel", "warning"]
    proc = subprocess.Popen(dies_with_parent(argv), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, 20, proc)
        yield f"redis://127.0.0.1:{port}/0", password
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


async def test_clients_authenticate_with_the_password_kept_apart(
    locked_redis: tuple[str, str], make_settings: Any, tmp_path: Path
) -> None:
    url, password = locked_redis
    anonymous = aioredis.Redis.from_url(url)
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await anonymous.ping()
    finally:
        await anonymous.aclose()

    # Given in the URL as users do; the settings keep it apart, and every client still gets it.
    settings = make_settings(redis_url=f"redis://:{password}@{url.removeprefix('redis://')}")
    assert settings.redis_url == url and password not in repr(settings)
    client = settings.redis.client()
    try:
        assert await client.ping()
        bridge = Bridge(bridge_config(settings))
        await bridge.start()
        await bridge.close()
        groups = await client.xinfo_groups(settings.capture_stream)
        assert [g["name"].decode() for g in groups] == [settings.capture_group]
    finally:
        await client.aclose()

    # A worker process gets REDIS_URL and REDIS_PASSWORD apart, and its readiness pings Redis.
    cluster = Cluster(settings, tmp_path / "logs")
    worker, base = cluster.worker("worker-redis-auth")
    try:
        await wait_ready(base, proc=worker)
        status, health = await http_json("GET", f"{base}/health")
        assert status == 200 and health["redis"] is True
    finally:
        cluster.close()
