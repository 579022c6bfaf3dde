"""The one configuration object of Frame Buffer v2.

Read only at entrypoints (worker, bridge, CLI, dev stack); everything else takes
arguments. Every field is an environment variable of the same name in upper case
(``REDIS_URL``, ``KAFKA_BROKER``, ...), documented in the README's table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.kafka_security import KafkaSecurity, Mechanism, Protocol
from app.names import MAX_TOPIC_LENGTH, collision_key
from app.redis_connection import RedisConnection, split_password

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
# A processor id is up to 100 characters; its topic is the prefix and the id.
_MAX_READY_PREFIX = MAX_TOPIC_LENGTH - 100
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
MIN_TOKEN_LENGTH = 16
LOG_LEVELS = ("crit", "error", "warn", "info", "debug")


class ConfigurationError(SystemExit):
    """Raised at start when the environment holds a bad value; exits with a message."""


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=False,
        extra="ignore",
        env_file=None,
        # A rejected value may be a secret (or a URL holding one): errors name the field only.
        hide_input_in_errors=True,
    )

    # --- servers -------------------------------------------------------------------
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

    # --- capture side ----------------------------------------------------------------
    capture_stream: str = Field("frames:metadata", description="Redis stream the capture services write")
    capture_group: str = Field("frame-orchestrator", description="Consumer group of the bridge on the capture stream")
    capture_naive_timezone: str = Field(
        "UTC",
        description="IANA zone of a capture timestamp written without offset, e.g. Europe/Warsaw"
        " (an epoch capture_timestamp wins over it)",
    )

    # --- topics ------------------------------------------------------------------------
    captured_topic: str = Field("frames.captured", description="Kafka topic the bridge writes, keyed by camera_id")
    captured_partitions: int = Field(8, ge=1, le=1024, description="Partitions of the captured topic and its tables")
    dead_letter_topic: str = Field(
        "frames.dead-letter", description="Where bad, shed and unroutable frames go, with a reason"
    )
    results_topic: str = Field("frames.results", description="Where processors publish their results")
    control_topic: str = Field("processors.control", description="Processor register/heartbeat/deregister events")
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

    # --- faust worker -----------------------------------------------------------------
    app_id: str = Field("frame-orchestrator", description="Faust app id: names the consumer group and changelog topics")
    store: str = Field("rocksdb://", description="Faust table store: rocksdb:// in production, memory:// in tests")
    data_dir: str = Field("./frame-orchestrator-data", description="Directory of the RocksDB table stores")
    web_host: str = Field("0.0.0.0", description="Interface the web API and dashboard bind to")
    web_advertised_host: str | None = Field(
        None, description="Host other workers use to reach this one's web API (default: the hostname)"
    )
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the web API, dashboard and /metrics of a worker")
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
    recovery_consistency_check: bool = Field(
        True,
        description="Wipe and restore a table partition whose stored offset is past its changelog's end (off on Tansu)",
    )
    routing_stuck_seconds: float = Field(
        30.0, gt=0, description="Seconds the routing agent may hold a frame without finishing one before /ready fails"
    )
    router_lag_budget: int = Field(
        500, ge=1, le=100_000, description="Captured frames per partition the routers may lag before the bridge slows"
    )

    # --- routing ------------------------------------------------------------------------
    default_capabilities: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Capabilities a frame gets when it names none (comma-separated)"
    )
    affinity_epsilon: float = Field(
        0.25, ge=0, le=10, description="Bounded-load slack: a camera moves above (1+eps) x average load"
    )
    dedupe_window_seconds: float = Field(
        120.0,
        gt=0,
        description="How long a (frame_id, capability) pair is remembered for dedupe; keep it above "
        "BRIDGE_CLAIM_IDLE_MS plus the bridge's retry backoff",
    )
    dedupe_max_pairs: int = Field(
        200_000,
        ge=1_000,
        description="Pairs remembered per captured partition (about 210 bytes each); the oldest go first",
    )
    router_linger_ms: int = Field(
        5, ge=0, le=1_000, description="How long the router's producer waits to fill a request with more records"
    )
    faust_prometheus: bool = Field(
        False, description="Also export Faust's own per-record sensor metrics (costs about 60 µs per record)"
    )

    # --- health and load -----------------------------------------------------------------
    heartbeat_interval: float = Field(5.0, gt=0, description="Seconds between processor heartbeats")
    heartbeat_misses: int = Field(3, ge=1, le=100, description="Missed heartbeats after which a processor is unhealthy")
    recovery_heartbeats: int = Field(
        2, ge=1, le=100, description="Fresh heartbeats with moving offsets before a processor is healthy again"
    )
    stall_timeout: float = Field(
        30.0, gt=0, description="Seconds of growing lag with standing offsets before a processor is stalled"
    )
    lag_sample_interval: float = Field(
        1.0, gt=0, description="Seconds between lag samples of the processor consumer groups"
    )

    # --- backpressure ---------------------------------------------------------------------
    bp_elevated: float = Field(0.6, gt=0, description="Utilisation (lag/capacity) where ELEVATED starts")
    bp_high: float = Field(0.8, gt=0, description="Utilisation where HIGH starts")
    bp_critical: float = Field(0.95, gt=0, description="Utilisation where CRITICAL starts")
    bp_hysteresis: float = Field(
        0.05, ge=0, lt=0.5, description="How far below a threshold utilisation must fall to step down"
    )
    protected_priority: int = Field(8, ge=0, le=10, description="Frames at or above this priority are never shed")

    # --- bridge ------------------------------------------------------------------------------
    bridge_batch_size: int = Field(500, ge=1, le=100_000, description="Entries per XREADGROUP and per produce batch")
    bridge_block_ms: int = Field(1000, ge=1, le=60_000, description="XREADGROUP BLOCK milliseconds")
    bridge_claim_idle_ms: int = Field(
        30_000, ge=100, description="Idle time after which another consumer's pending entry is claimed"
    )
    bridge_claim_interval: float = Field(10.0, gt=0, description="Seconds between XAUTOCLAIM sweeps")
    bridge_trim_acked: bool = Field(
        True, description="XTRIM the capture stream's prefix every group has read and acknowledged"
    )
    bridge_max_deliveries: int = Field(
        10, ge=1, le=10_000, description="Deliveries after which a pending entry is a poison pill and dead-lettered"
    )
    bridge_consumer_name: str | None = Field(
        None, description="Consumer name in the capture group (default: host-pid-random)"
    )
    bridge_metrics_port: int = Field(9108, ge=0, le=65535, description="Port of the bridge's /metrics (0 disables)")

    # --- processors -----------------------------------------------------------------------------
    processor_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of an SDK processor's /metrics (0 disables)"
    )
    processor_frame_key_prefix: str | None = Field(
        None,
        min_length=1,
        description="SDK processors read pixels only under keys with this prefix; others are dead-lettered",
    )
    processor_max_partitions: int = Field(
        64, ge=1, le=1024, description="Most partitions a processor may ask for at registration"
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
    capture_metrics_port: int = Field(
        9109, ge=0, le=65535, description="Port of /metrics of `capture --source` (0 disables)"
    )

    # --- API access ---------------------------------------------------------------------------
    api_token: SecretStr | None = Field(
        None, description="Bearer token of REST writes (register, heartbeat); unset: writes only from loopback"
    )
    admin_token: SecretStr | None = Field(
        None, description="When set, changing or deleting a registered processor needs it (its own restart does not)"
    )
    api_read_auth: bool = Field(False, description="Reads of the REST API need API_TOKEN (or ADMIN_TOKEN) too")
    web_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins besides a worker's own that may send writes (comma-separated)",
    )
    metrics_host: str = Field(
        "0.0.0.0", description="Interface the bridge's, SDK processors' and `capture --source`'s /metrics bind to"
    )
    # --- every service -------------------------------------------------------------------------
    shutdown_grace_seconds: float = Field(
        8.0,
        gt=0,
        le=600,
        description="Seconds a service may take to stop after SIGTERM/SIGINT before it exits regardless",
    )

    # --- telemetry ----------------------------------------------------------------------------------
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint; traces are exported only when set"
    )
    otel_sampling_ratio: float = Field(1.0, ge=0, le=1, description="Fraction of frames whose trace is sampled")
    otel_service_name: str = Field("frame-orchestrator", description="service.name of the traces")
    log_level: str = Field("info", description="crit, error, warn, info or debug")

    @field_validator("default_capabilities", "web_allowed_origins", mode="before")
    @classmethod
    def _split_capabilities(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("captured_topic", "dead_letter_topic", "results_topic", "control_topic", "app_id")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not _TOPIC_RE.match(value):
            raise ValueError("must be 1-200 characters of letters, digits, '.', '_' or '-'")
        return value

    @field_validator("ready_topic_prefix")
    @classmethod
    def _ready_prefix(cls, value: str) -> str:
        if not _TOPIC_RE.match(value) or len(value) > _MAX_READY_PREFIX:
            raise ValueError(f"must be 1-{_MAX_READY_PREFIX} characters of letters, digits, '.', '_' or '-'")
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

    @field_validator("api_token", "admin_token", "orchestrator_token")
    @classmethod
    def _token_length(cls, value: SecretStr | None) -> SecretStr | None:
        # A short token can be guessed over the network; an empty one is a typo, not "off".
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters (unset it to turn it off)")
        return value

    @field_validator("web_allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not _ORIGIN_RE.match(origin):
                raise ValueError(f"{origin!r} is not an origin like https://host[:port]")
        return [origin.lower() for origin in value]

    @field_validator("capture_naive_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name such as UTC or Europe/Warsaw") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Settings:
        if not self.bp_elevated < self.bp_high < self.bp_critical:
            raise ValueError("BP_ELEVATED < BP_HIGH < BP_CRITICAL must hold")
        if self.broker_session_timeout > 90:
            raise ValueError("BROKER_SESSION_TIMEOUT must not exceed the 90 s request timeout")
        if self.processor_partitions > self.processor_max_partitions:
            raise ValueError("PROCESSOR_PARTITIONS must not exceed PROCESSOR_MAX_PARTITIONS")
        prefix = collision_key(self.ready_topic_prefix)
        for name in ("captured_topic", "dead_letter_topic", "results_topic", "control_topic", "app_id"):
            # Else registering a processor with the rest of that name would take over the topic.
            if collision_key(getattr(self, name)).startswith(prefix):
                raise ValueError(f"READY_TOPIC_PREFIX must not begin {name.upper()} ({getattr(self, name)!r})")
        return self

    @model_validator(mode="after")
    def _redis_tls(self) -> Settings:
        tls_files = self.redis_ssl_ca_certs or self.redis_ssl_certfile or self.redis_ssl_keyfile
        if tls_files and not self.redis_url.startswith("rediss://"):
            raise ValueError("REDIS_SSL_CA_CERTS/CERTFILE/KEYFILE need a rediss:// REDIS_URL")
        if bool(self.redis_ssl_certfile) != bool(self.redis_ssl_keyfile):
            raise ValueError("REDIS_SSL_CERTFILE and REDIS_SSL_KEYFILE go together")
        return self

    @model_validator(mode="after")
    def _kafka_security_usable(self) -> Settings:
        problems = self.kafka_security.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How every Kafka client of this process authenticates and encrypts."""
        return KafkaSecurity.from_settings(self)

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
    def capture_timezone(self) -> ZoneInfo:
        """The zone a naive capture timestamp is read in."""
        return ZoneInfo(self.capture_naive_timezone)

    @property
    def bootstrap_servers(self) -> str:
        """The broker list as aiokafka wants it: host:port,host:port."""
        return ",".join(p.strip().removeprefix("kafka://") for p in self.kafka_broker.split(","))

    def as_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment a child process needs to run with exactly these settings."""
        env = dict(os.environ if base is None else base)
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is None:
                env.pop(name.upper(), None)
            elif isinstance(value, list):
                env[name.upper()] = ",".join(str(v) for v in value)
            else:
                env[name.upper()] = str(value)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def ready_topic(self, processor_id: str) -> str:
        return f"{self.ready_topic_prefix}{processor_id}"

    def processor_group(self, processor_id: str) -> str:
        return f"{self.processor_group_prefix}{processor_id}"


def shown_input(name: str, value: Any) -> str:
    """A rejected value as an error may show it: secrets never, URLs without their userinfo."""
    if isinstance(value, SecretStr) or any(word in name for word in SECRET_NAME_PARTS):
        return "***"
    text = repr(value)
    # Whatever precedes the last '@' may be credentials, even in a URL too mistyped to parse.
    return f"'***@{text.rpartition('@')[2]}" if "@" in text else text


SECRET_NAME_PARTS = ("password", "secret", "token")


def load_settings(**overrides: Any) -> Settings:
    """Read Settings from the environment; on a bad value exit with a message naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "configuration"
            got = f" (got {shown_input(name.lower(), err['input'])})" if "input" in err and err["loc"] else ""
            lines.append(f"  {name}: {err['msg']}{got}")
        raise ConfigurationError("invalid configuration:\n" + "\n".join(lines)) from None
