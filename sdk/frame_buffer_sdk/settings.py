"""ProcessorSettings: what a processor built on the SDK reads from its environment.

Read only at the processor's entrypoint; the SDK's classes take the object. Every field is
an environment variable of the same name in upper case, and the orchestrator's Settings
(a superset) reads the same names, so one environment serves a whole deployment.
"""

from __future__ import annotations

import os
import re
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from frame_buffer_sdk.errors import ConfigurationError
from frame_buffer_sdk.kafka_security import KafkaSecurity, Mechanism, Protocol
from frame_buffer_sdk.names import MAX_TOPIC_LENGTH
from frame_buffer_sdk.redis_connection import RedisConnection, split_password

TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
# A processor id is up to 100 characters; its topic is the prefix and the id.
MAX_READY_PREFIX = MAX_TOPIC_LENGTH - 100
MIN_TOKEN_LENGTH = 16
LOG_LEVELS = ("crit", "error", "warn", "info", "debug")
SECRET_NAME_PARTS = ("password", "secret", "token")

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class ProcessorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=False,
        extra="ignore",
        env_file=None,
        # A rejected value may be a secret (or a URL holding one): errors name the field only.
        hide_input_in_errors=True,
    )

    redis_url: str = Field("redis://localhost:6379/0", description="Redis holding the capture stream and pixel bytes")
    redis_password: SecretStr | None = Field(
        None, description="Password of REDIS_URL (one in the URL is moved here, out of logs)"
    )
    redis_ssl_ca_certs: str | None = Field(None, description="CA bundle that signs Redis's certificate (rediss://)")
    redis_ssl_certfile: str | None = Field(None, description="Client certificate for Redis over TLS (rediss://)")
    redis_ssl_keyfile: str | None = Field(None, description="Key of REDIS_SSL_CERTFILE")
    kafka_broker: str = Field("kafka://localhost:9092", description="Kafka bootstrap URL(s), comma-separated")
    kafka_security_protocol: Protocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, for every Kafka client"
    )
    kafka_sasl_mechanism: Mechanism = Field("PLAIN", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    kafka_sasl_username: str | None = Field(None, description="SASL user (SASL_* protocols)")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (SASL_* protocols)")
    kafka_ssl_cafile: str | None = Field(
        None, description="CA bundle that signs the brokers' certificates (default: system CAs)"
    )
    kafka_ssl_certfile: str | None = Field(None, description="Client certificate for mutual TLS with the brokers")
    kafka_ssl_keyfile: str | None = Field(None, description="Key of KAFKA_SSL_CERTFILE")
    captured_partitions: int = Field(8, ge=1, le=1024, description="Partitions of the captured topic and its tables")
    dead_letter_topic: str = Field(
        "frames.dead-letter", description="Where bad, shed and unroutable frames go, with a reason"
    )
    results_topic: str = Field("frames.results", description="Where processors publish their results")
    ready_topic_prefix: str = Field("frames.ready.", description="Prefix of each processor's own topic")
    processor_group_prefix: str = Field(
        "processor.",
        min_length=1,
        description="Prefix of each processor's consumer group; one per deployment sharing a Kafka cluster",
    )
    processor_partitions: int = Field(4, ge=1, le=1024, description="Default partitions of a processor's topic")
    topic_replication_factor: int = Field(
        1, ge=1, le=16, description="Replication factor of topics this service creates"
    )
    app_id: str = Field("frame-orchestrator", description="Faust app id: names the consumer group and changelog topics")
    broker_rebalance_timeout: float = Field(
        60.0, gt=0, description="Seconds the group coordinator waits for members to rejoin"
    )
    broker_session_timeout: float = Field(
        60.0, gt=0, description="Seconds without heartbeat before a worker is dropped from its group"
    )
    broker_heartbeat_interval: float = Field(3.0, gt=0, description="Seconds between consumer group heartbeats")
    consumer_fetch_max_wait_ms: int = Field(
        20, ge=1, le=30_000, description="Longest a Kafka fetch may wait for data (bounds per-hop latency)"
    )
    dedupe_window_seconds: float = Field(
        120.0,
        gt=0,
        description="How long a (frame_id, capability) pair is remembered for dedupe; keep it above "
        "BRIDGE_CLAIM_IDLE_MS plus the bridge's retry backoff",
    )
    heartbeat_interval: float = Field(5.0, gt=0, description="Seconds between processor heartbeats")
    processor_metrics_port: int = Field(
        9200, ge=0, le=65535, description="Port of an SDK processor's /metrics (0 disables)"
    )
    metrics_v1_aliases: bool = Field(
        True,
        description="Expose the deprecated metric names beside their replacements (README: Deprecated metric names)",
    )
    processor_frame_key_prefix: str | None = Field(
        None,
        min_length=1,
        description="SDK processors read pixels only under keys with this prefix; others are dead-lettered",
    )
    orchestrator_url: str = Field(
        "http://localhost:6066", description="Base URL of the orchestrator web API, for processors"
    )
    orchestrator_token: SecretStr | None = Field(
        None, description="Token an SDK processor sends to ORCHESTRATOR_URL (the workers' API_TOKEN)"
    )
    frame_ttl_seconds: int = Field(
        300, ge=1, description="TTL of the pixel bytes the capture (synthetic or cameras) stores"
    )
    metrics_host: str = Field(
        "0.0.0.0",
        description="Interface the bridge's, SDK processors', `capture --source`'s and the relay's /metrics bind to",
    )
    shutdown_grace_seconds: float = Field(
        8.0,
        gt=0,
        le=600,
        description="Seconds a service may take to stop after SIGTERM/SIGINT before it exits regardless",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint; traces are exported only when set"
    )
    otel_sampling_ratio: float = Field(1.0, ge=0, le=1, description="Fraction of frames whose trace is sampled")
    otel_service_name: str = Field(
        "frame-orchestrator",
        description="service.name of the traces; unset, the bridge and processors add -bridge and -processor",
    )
    log_level: str = Field("info", description="crit, error, warn, info or debug")

    @field_validator("dead_letter_topic", "results_topic", "app_id")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        return checked_topic_name(value)

    @field_validator("ready_topic_prefix")
    @classmethod
    def _ready_prefix(cls, value: str) -> str:
        if not TOPIC_RE.match(value) or len(value) > MAX_READY_PREFIX:
            raise ValueError(f"must be 1-{MAX_READY_PREFIX} characters of letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _redis_password_out_of_url(cls, data: Any) -> Any:
        # Kept apart, the URL can be logged, shown and passed to children as it is.
        if not isinstance(data, dict) or not isinstance(data.get("redis_url"), str):
            return data
        url, password = split_password(data["redis_url"])
        if password is None:
            return data
        data = {**data, "redis_url": url}
        data.setdefault("redis_password", password)
        return data

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator(
        "redis_ssl_ca_certs",
        "redis_ssl_certfile",
        "redis_ssl_keyfile",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
    )
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isfile(value):
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("kafka_broker")
    @classmethod
    def _kafka_scheme(cls, value: str) -> str:
        for part in value.split(","):
            host = part.strip().removeprefix("kafka://")
            if not host or ":" not in host:
                raise ValueError("must be kafka://host:port (comma-separated for several)")
        return value if value.startswith("kafka://") else f"kafka://{value}"

    @field_validator("orchestrator_token")
    @classmethod
    def _orchestrator_token_length(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_token(value)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @model_validator(mode="after")
    def _redis_tls(self) -> ProcessorSettings:
        tls_files = self.redis_ssl_ca_certs or self.redis_ssl_certfile or self.redis_ssl_keyfile
        if tls_files and not self.redis_url.startswith("rediss://"):
            raise ValueError("REDIS_SSL_CA_CERTS/CERTFILE/KEYFILE need a rediss:// REDIS_URL")
        if bool(self.redis_ssl_certfile) != bool(self.redis_ssl_keyfile):
            raise ValueError("REDIS_SSL_CERTFILE and REDIS_SSL_KEYFILE go together")
        return self

    @model_validator(mode="after")
    def _kafka_security_usable(self) -> ProcessorSettings:
        problems = self.kafka_security.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How every Kafka client of this process authenticates and encrypts."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            cafile=self.kafka_ssl_cafile,
            certfile=self.kafka_ssl_certfile,
            keyfile=self.kafka_ssl_keyfile,
        )

    @property
    def redis(self) -> RedisConnection:
        """How to reach Redis: the URL, its password and TLS files, for every client."""
        return RedisConnection(
            url=self.redis_url,
            password=self.redis_password,
            ssl_ca_certs=self.redis_ssl_ca_certs,
            ssl_certfile=self.redis_ssl_certfile,
            ssl_keyfile=self.redis_ssl_keyfile,
        )

    @property
    def bootstrap_servers(self) -> str:
        """The broker list as aiokafka wants it: host:port,host:port."""
        return ",".join(p.strip().removeprefix("kafka://") for p in self.kafka_broker.split(","))

    def service_name(self, role: str) -> str:
        """service.name of this process's traces: OTEL_SERVICE_NAME as given, or, left unset, the
        default with ``-<role>`` (frame-orchestrator-bridge, frame-orchestrator-processor), so
        every service has its own name. The worker uses OTEL_SERVICE_NAME itself."""
        if "otel_service_name" in self.model_fields_set:
            return self.otel_service_name
        return f"{self.otel_service_name}-{role}"

    def ready_topic(self, processor_id: str) -> str:
        return f"{self.ready_topic_prefix}{processor_id}"

    def processor_group(self, processor_id: str) -> str:
        return f"{self.processor_group_prefix}{processor_id}"


def checked_topic_name(value: str) -> str:
    if not TOPIC_RE.match(value):
        raise ValueError("must be 1-200 characters of letters, digits, '.', '_' or '-'")
    return value


def checked_token(value: SecretStr | None) -> SecretStr | None:
    # A short token can be guessed over the network; an empty one is a typo, not "off".
    if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
        raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters (unset it to turn it off)")
    return value


def shown_input(name: str, value: Any) -> str:
    """A rejected value as an error may show it: secrets never, URLs without their userinfo."""
    if isinstance(value, SecretStr) or any(word in name for word in SECRET_NAME_PARTS):
        return "***"
    text = repr(value)
    # Whatever precedes the last '@' may be credentials, even in a URL too mistyped to parse.
    return f"'***@{text.rpartition('@')[2]}" if "@" in text else text


def load(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Read ``cls`` from the environment; on a bad value exit with a message naming it."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "configuration"
            got = f" (got {shown_input(name.lower(), err['input'])})" if "input" in err and err["loc"] else ""
            lines.append(f"  {name}: {err['msg']}{got}")
        raise ConfigurationError("invalid configuration:\n" + "\n".join(lines)) from None


def load_processor_settings(**overrides: Any) -> ProcessorSettings:
    return load(ProcessorSettings, **overrides)
