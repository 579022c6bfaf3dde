"""rediss:// with a CA and a client certificate, through a real TLS handshake to a real Valkey.

The embedded Valkey is built without TLS, so a TLS terminator in this test (requiring a client
certificate signed by the test CA) stands in front of the session's Redis, as stunnel would.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.devstack import DevStack
from app.settings import Settings

pytestmark = pytest.mark.integration


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _self_signed(d: Path, name: str) -> None:
    key, pem = str(d / f"{name}.key"), str(d / f"{name}.pem")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        f"/CN={name}",
        "-keyout",
        key,
        "-out",
        pem,
    )


def _signed_by_ca(d: Path, name: str, usage: str) -> None:
    """A certificate for 127.0.0.1/localhost that the test CA signed, for ``usage``."""
    ext = d / f"{name}.cnf"
    ext.write_text(f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n")
    key, csr, pem = (str(d / f"{name}.{suffix}") for suffix in ("key", "csr", "pem"))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", key, "-out", csr)
    ca, ca_key = str(d / "ca.pem"), str(d / "ca.key")
    signing = ["-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1", "-extfile", str(ext)]
    _openssl("x509", "-req", "-in", csr, *signing, "-out", pem)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl on PATH to make the test certificates")
    d = tmp_path_factory.mktemp("redis-tls")
    _self_signed(d, "ca")
    _self_signed(d, "other")  # a CA that signed nothing here
    _signed_by_ca(d, "server", "serverAuth")
    _signed_by_ca(d, "client", "clientAuth")
    return {name: d / name for name in ("ca.pem", "other.pem", "server.pem", "server.key", "client.pem", "client.key")}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def tls_redis(stack: DevStack, certs: dict[str, Path]) -> AsyncIterator[str]:
    """A rediss:// URL whose TLS endpoint requires a client certificate from the test CA."""
    assert stack.redis_url is not None
    upstream = urlsplit(stack.redis_url)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs["ca.pem"]))
    context.load_cert_chain(certs["server.pem"], certs["server.key"])
    context.verify_mode = ssl.CERT_REQUIRED

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(upstream.hostname, upstream.port)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"rediss://127.0.0.1:{port}{upstream.path or '/0'}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


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
