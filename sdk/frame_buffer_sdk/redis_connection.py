"""How every Redis client of the project connects: URL, password apart from it, TLS files.

``Settings.redis`` builds one ``RedisConnection``; services call ``.client()`` instead of
``Redis.from_url(url)``, so the password and the rediss:// options reach every client.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from pydantic import SecretStr


def split_password(url: str) -> tuple[str, str | None]:
    """``url`` without the password of its userinfo, and that password (None when it has none)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}@{host}" if user else host
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


class RedisConnection(NamedTuple):
    url: str
    password: SecretStr | None = None
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def client(self, **options: Any) -> aioredis.Redis:
        """A client of this Redis; ``options`` are redis-py's (socket_timeout, ...)."""
        if self.password is not None:
            options["password"] = self.password.get_secret_value()
        if self.url.startswith("rediss://"):
            # redis-py takes TLS options only for rediss://; plain connections refuse them.
            options.update(ssl_ca_certs=self.ssl_ca_certs, ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile)
        return aioredis.Redis.from_url(self.url, **options)
