"""TLS for tests on servers built without it: test certificates, and a terminator in front.

The embedded Valkey and Tansu speak plain TCP only, so ``TlsTerminator`` takes the TLS side
(requiring a client certificate from the test CA, as a broker with mutual TLS does) and
relays the bytes to the plain server, as stunnel would.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

CERT_FILES = ("ca.pem", "other.pem", "server.pem", "server.key", "client.pem", "client.key")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _self_signed(d: Path, name: str) -> None:
    key, pem = str(d / f"{name}.key"), str(d / f"{name}.pem")
    new_key = ["-newkey", "rsa:2048", "-nodes", "-keyout", key]
    _openssl("req", "-x509", *new_key, "-days", "1", "-subj", f"/CN={name}", "-out", pem)


def _signed_by_ca(d: Path, name: str, usage: str) -> None:
    """A certificate for 127.0.0.1/localhost that the test CA signed, for ``usage``."""
    ext = d / f"{name}.cnf"
    ext.write_text(f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n")
    key, csr, pem = (str(d / f"{name}.{suffix}") for suffix in ("key", "csr", "pem"))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", f"/CN={name}", "-out", csr)
    ca, ca_key = str(d / "ca.pem"), str(d / "ca.key")
    signing = ["-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1", "-extfile", str(ext)]
    _openssl("x509", "-req", "-in", csr, *signing, "-out", pem)


def make_certs(d: Path) -> dict[str, Path]:
    """A test CA, a server and a client certificate it signed, and an unrelated CA ("other")."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl on PATH to make the test certificates")
    _self_signed(d, "ca")
    _self_signed(d, "other")
    _signed_by_ca(d, "server", "serverAuth")
    _signed_by_ca(d, "client", "clientAuth")
    return {name: d / name for name in CERT_FILES}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


class TlsTerminator:
    """Listens with TLS on 127.0.0.1 (``port``) and relays each connection to a plain server."""

    def __init__(self, certs: dict[str, Path], upstream: tuple[str, int], port: int = 0) -> None:
        self.certs, self.upstream, self.port = certs, upstream, port
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TlsTerminator:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.certs["ca.pem"]))
        context.load_cert_chain(self.certs["server.pem"], self.certs["server.key"])
        context.verify_mode = ssl.CERT_REQUIRED
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
