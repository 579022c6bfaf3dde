"""rediss:// with a CA and a client certificate, through a real TLS handshake to a real Valkey
(behind tests.integration.tls.TlsTerminator: the embedded Valkey is built without TLS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from core.settings import Settings
from devtools.devstack import DevStack
from tests.integration.tls import TlsTerminator, make_certs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_certs(tmp_path_factory.mktemp("redis-tls"))


@pytest.fixture
async def tls_redis(stack: DevStack, certs: dict[str, Path]) -> AsyncIterator[str]:
    """A rediss:// URL whose TLS endpoint requires a client certificate from the test CA."""
    assert stack.redis_url is not None
    upstream = urlsplit(stack.redis_url)
    assert upstream.hostname and upstream.port
    async with TlsTerminator(certs, (upstream.hostname, upstream.port)) as tls:
        yield f"rediss://127.0.0.1:{tls.port}{upstream.path or '/0'}"


async def _ping(settings: Settings) -> Any:
    client = settings.redis.client(socket_timeout=5)
    try:
        return await client.ping()
    finally:
        await client.aclose()


async def test_rediss_with_ca_and_client_certificate(tls_redis: str, certs: dict[str, Path]) -> None:
    files = {"redis_ssl_certfile": str(certs["client.pem"]), "redis_ssl_keyfile": str(certs["client.key"])}
    assert await _ping(Settings(redis_url=tls_redis, redis_ssl_ca_certs=str(certs["ca.pem"]), **files))
    # The server's certificate is checked against REDIS_SSL_CA_CERTS, not taken on trust...
    with pytest.raises(RedisConnectionError):
        await _ping(Settings(redis_url=tls_redis, redis_ssl_ca_certs=str(certs["other.pem"]), **files))
    # ...and a TLS endpoint that asks for a client certificate gets REDIS_SSL_CERTFILE's.
    with pytest.raises(RedisConnectionError):
        await _ping(Settings(redis_url=tls_redis, redis_ssl_ca_certs=str(certs["ca.pem"])))
