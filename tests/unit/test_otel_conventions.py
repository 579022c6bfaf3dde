"""OpenTelemetry conventions: per-service names, the standard sampler variables, messaging attributes."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

import frame_buffer_sdk.telemetry as telemetry
from core.settings import Settings
from frame_buffer_sdk.settings import ProcessorSettings
from frame_buffer_sdk.telemetry import PROCESS, PUBLISH, messaging_attributes, setup_tracing


def test_unset_service_name_differs_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    settings = Settings()
    assert settings.otel_service_name == "frame-orchestrator"  # the worker's
    assert settings.service_name("bridge") == "frame-orchestrator-bridge"
    assert ProcessorSettings().service_name("processor") == "frame-orchestrator-processor"


def test_a_service_name_set_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "front-door-bridge")
    assert Settings().service_name("bridge") == "front-door-bridge"
    assert Settings(otel_service_name="detector").service_name("processor") == "detector"


def _provider_sampler(monkeypatch: pytest.MonkeyPatch, ratio: float) -> object:
    monkeypatch.setattr(telemetry, "_configured", True)  # build a provider, install none globally
    provider = setup_tracing("t", sampling_ratio=ratio, extra_processors=[SimpleSpanProcessor(InMemorySpanExporter())])
    assert provider is not None
    try:
        return provider.sampler
    finally:
        provider.shutdown()


def test_otel_sampling_ratio_samples_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    sampler = _provider_sampler(monkeypatch, 0.25)
    assert isinstance(sampler, ParentBased)
    assert "TraceIdRatioBased{0.25}" in sampler.get_description()


def test_the_standard_sampler_variables_override_the_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert _provider_sampler(monkeypatch, 1.0) is ALWAYS_OFF
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    sampler = _provider_sampler(monkeypatch, 1.0)
    assert isinstance(sampler, TraceIdRatioBased) and sampler.rate == 0.1


def test_messaging_attributes_follow_the_semantic_conventions() -> None:
    assert messaging_attributes(PROCESS, "frames.ready.p1", key=b"cam-1", partition=2, offset=7, group="g") == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": "frames.ready.p1",
        "messaging.kafka.message.key": "cam-1",
        "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 7,
        "messaging.consumer.group.name": "g",
    }
    assert messaging_attributes(PUBLISH, None) == {"messaging.system": "kafka", "messaging.operation.type": "publish"}
