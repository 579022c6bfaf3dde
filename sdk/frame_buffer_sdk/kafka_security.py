"""How every Kafka client of the project authenticates and encrypts: one typed object.

Settings' ``kafka_security`` builds it at the entrypoints; ``client_kwargs()`` goes into
every aiokafka producer, consumer and admin client (``**security.client_kwargs()``) and
the orchestrator's ``app.transport.faust_credentials`` into the Faust app, so no client can be left on PLAINTEXT by
forgetting an argument somewhere. One SSL context is shared by all clients of a process.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import SecretStr

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "PLAIN"
    username: str | None = None
    password: SecretStr | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def problems(self) -> list[str]:
        """What makes this combination unusable, for a message at start."""
        found = []
        if self.uses_sasl and not (self.username and self.password):
            found.append(f"KAFKA_SECURITY_PROTOCOL={self.protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if not self.uses_tls and (self.cafile or self.certfile or self.keyfile):
            found.append(f"KAFKA_SSL_* files need KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, not {self.protocol}")
        if bool(self.certfile) != bool(self.keyfile):
            found.append("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        return found

    def ssl_context(self) -> ssl.SSLContext | None:
        """The process's one SSL context (verifying the broker's certificate and host name)."""
        return _shared_context(self.cafile, self.certfile, self.keyfile) if self.uses_tls else None

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password.get_secret_value() if self.password else None
        return kwargs


PLAINTEXT = KafkaSecurity()


@lru_cache(maxsize=4)
def _shared_context(cafile: str | None, certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    from aiokafka.helpers import create_ssl_context

    context: ssl.SSLContext = create_ssl_context(cafile=cafile, certfile=certfile, keyfile=keyfile)
    return context
