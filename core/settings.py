"""The one configuration object of the orchestrator's services.

Read only at entrypoints (worker, bridge, CLI, dev stack); everything else takes
arguments. Every field is an environment variable of the same name in upper case
(``REDIS_URL``, ``KAFKA_BROKER``, ...), documented in the README's table. The fields a
processor reads too come from the SDK's ProcessorSettings, so both read one environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from frame_buffer_sdk.errors import ConfigurationError
from frame_buffer_sdk.names import collision_key
from frame_buffer_sdk.settings import (
    MIN_TOKEN_LENGTH,
    ProcessorSettings,
    checked_token,
    checked_topic_name,
    load,
)

__all__ = ["MIN_TOKEN_LENGTH", "ConfigurationError", "Settings", "load_settings"]

_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(ProcessorSettings):
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
    control_topic: str = Field("processors.control", description="Processor register/heartbeat/deregister events")

    # --- faust worker -----------------------------------------------------------------
    store: str = Field("rocksdb://", description="Faust table store: rocksdb:// in production, memory:// in tests")
    data_dir: str = Field("./frame-orchestrator-data", description="Directory of the RocksDB table stores")
    web_host: str = Field("0.0.0.0", description="Interface the web API and dashboard bind to")
    web_advertised_host: str | None = Field(
        None, description="Host other workers use to reach this one's web API (default: the hostname)"
    )
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the web API, dashboard and /metrics of a worker")
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
    processor_max_partitions: int = Field(
        64, ge=1, le=1024, description="Most partitions a processor may ask for at registration"
    )
    capture_metrics_port: int = Field(
        9109, ge=0, le=65535, description="Port of /metrics of `capture --source` (0 disables)"
    )
    relay_metrics_port: int = Field(
        9110, ge=0, le=65535, description="Port of /metrics of `frame-orchestrator relay` (0 disables)"
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

    @field_validator("default_capabilities", "web_allowed_origins", mode="before")
    @classmethod
    def _split_capabilities(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("captured_topic", "control_topic")
    @classmethod
    def _orchestrator_topic_name(cls, value: str) -> str:
        return checked_topic_name(value)

    @field_validator("api_token", "admin_token")
    @classmethod
    def _token_length(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_token(value)

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

    @property
    def capture_timezone(self) -> ZoneInfo:
        """The zone a naive capture timestamp is read in."""
        return ZoneInfo(self.capture_naive_timezone)

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


def load_settings(**overrides: Any) -> Settings:
    """Read Settings from the environment; on a bad value exit with a message naming it."""
    return load(Settings, **overrides)
