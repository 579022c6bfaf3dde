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

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


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
    )

    # --- servers -------------------------------------------------------------------
    redis_url: str = Field("redis://localhost:6379/0", description="Redis holding the capture stream and pixel bytes")
    kafka_broker: str = Field("kafka://localhost:9092", description="Kafka bootstrap URL(s), comma-separated")

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
        True, description="Refuse to start when a table's stored offset is past its changelog's end (off on Tansu)"
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
    bridge_consumer_name: str | None = Field(
        None, description="Consumer name in the capture group (default: host-pid-random)"
    )
    bridge_metrics_port: int = Field(9108, ge=0, le=65535, description="Port of the bridge's /metrics (0 disables)")

    # --- processors -----------------------------------------------------------------------------
    processor_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of an SDK processor's /metrics (0 disables)"
    )
    orchestrator_url: str = Field(
        "http://localhost:6066", description="Base URL of the orchestrator web API, for processors"
    )
    frame_ttl_seconds: int = Field(
        300, ge=1, description="TTL of the pixel bytes the capture (synthetic or cameras) stores"
    )
    capture_metrics_port: int = Field(
        9109, ge=0, le=65535, description="Port of /metrics of `capture --source` (0 disables)"
    )

    # --- telemetry ----------------------------------------------------------------------------------
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint; traces are exported only when set"
    )
    otel_sampling_ratio: float = Field(1.0, ge=0, le=1, description="Fraction of frames whose trace is sampled")
    otel_service_name: str = Field("frame-orchestrator", description="service.name of the traces")
    log_level: str = Field("info", description="crit, error, warn, info or debug")

    @field_validator("default_capabilities", mode="before")
    @classmethod
    def _split_capabilities(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("captured_topic", "dead_letter_topic", "results_topic", "control_topic", "app_id")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not _TOPIC_RE.match(value):
            raise ValueError("must be 1-200 characters of letters, digits, '.', '_' or '-'")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("kafka_broker")
    @classmethod
    def _kafka_scheme(cls, value: str) -> str:
        for part in value.split(","):
            host = part.strip().removeprefix("kafka://")
            if not host or ":" not in host:
                raise ValueError("must be kafka://host:port (comma-separated for several)")
        return value if value.startswith("kafka://") else f"kafka://{value}"

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
        if value not in {"crit", "error", "warn", "info", "debug"}:
            raise ValueError("must be one of crit, error, warn, info, debug")
        return value

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Settings:
        if not self.bp_elevated < self.bp_high < self.bp_critical:
            raise ValueError("BP_ELEVATED < BP_HIGH < BP_CRITICAL must hold")
        if self.broker_session_timeout > 90:
            raise ValueError("BROKER_SESSION_TIMEOUT must not exceed the 90 s request timeout")
        return self

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


def load_settings(**overrides: Any) -> Settings:
    """Read Settings from the environment; on a bad value exit with a message naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "configuration"
            lines.append(f"  {name}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigurationError("invalid configuration:\n" + "\n".join(lines)) from None
