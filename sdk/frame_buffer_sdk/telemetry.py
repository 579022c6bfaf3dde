"""OpenTelemetry: one trace per frame, carried in the capture entry and in Kafka headers.

Each service calls ``setup_tracing`` once at its entrypoint. Hops pass the W3C context
along as ``traceparent``/``tracestate`` Kafka headers; ``context_from_headers`` and
``headers_for`` are the only two things the hot paths touch.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from frame_buffer_sdk.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

_PROPAGATOR = TraceContextTextMapPropagator()
_HEADER_NAMES = ("traceparent", "tracestate")
_configured = False

Headers = Sequence[tuple[str, bytes]]

# OpenTelemetry messaging semantic conventions: messaging.operation.type of each span.
PUBLISH = "publish"
PROCESS = "process"
RECEIVE = "receive"


def messaging_attributes(
    operation: str,
    destination: str | None,
    *,
    key: bytes | str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    group: str | None = None,
) -> dict[str, str | int]:
    """The messaging.* attributes of a Kafka span: ``destination`` is the topic written (publish)
    or read (process, receive), None when not known yet; ``offset`` the record's, ``group`` the
    consumer group reading."""
    attributes: dict[str, str | int] = {"messaging.system": "kafka", "messaging.operation.type": operation}
    if destination is not None:
        attributes["messaging.destination.name"] = destination
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode(errors="replace") if isinstance(key, bytes) else key
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attributes["messaging.kafka.offset"] = offset
    if group is not None:
        attributes["messaging.consumer.group.name"] = group
    return attributes


def setup_tracing(
    service_name: str,
    otlp_endpoint: str | None = None,
    sampling_ratio: float = 1.0,
    extra_processors: Iterable[SpanProcessor] = (),
) -> TracerProvider | None:
    """Install the SDK provider once per process. Exports over OTLP/HTTP when an endpoint is given.

    With nothing to export to, no provider is made (None): the API's no-op tracer stays, and the
    hot paths (which ask whether an SDK provider is installed) make no spans at all.
    """
    global _configured
    extra_processors = list(extra_processors)
    if not otlp_endpoint and not extra_processors:
        return None
    # The SDK and exporter are the optional extra `frame-buffer-sdk[tracing]`: the API alone
    # (a dependency) carries the context through every hop at no cost.
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:
        raise ConfigurationError(
            f"exporting traces needs the OpenTelemetry SDK: pip install 'frame-buffer-sdk[tracing]' ({exc})"
        ) from None
    # The standard OTEL_TRACES_SAMPLER (and _ARG), when set, override sampling_ratio: with no
    # sampler given, the SDK reads them itself.
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else ParentBased(TraceIdRatioBased(sampling_ratio))
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}), sampler=sampler)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    if not _configured:
        trace.set_tracer_provider(provider)
        _configured = True
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def context_from_traceparent(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """The parent context written by the capture service, or None to start a new root."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    ctx = _PROPAGATOR.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def context_from_headers(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Context | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    found = {
        k: (v.decode("ascii", "replace") if isinstance(v, bytes | bytearray) else str(v))
        for k, v in items
        if k in _HEADER_NAMES and v
    }
    return context_from_traceparent(found.get("traceparent"), found.get("tracestate"))


def headers_for(ctx: Context | None = None) -> list[tuple[str, bytes]]:
    """W3C headers of the given (or current) context, ready for a Kafka record."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return [(k, v.encode("ascii")) for k, v in carrier.items()]


def traceparent_of(ctx: Context | None = None) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier.get("traceparent")


def trace_headers(traceparent: str | None, tracestate: str | None = None) -> list[tuple[str, bytes]]:
    """A trace context already in W3C text form as record headers, with no span in between."""
    if not traceparent:
        return []
    headers = [("traceparent", traceparent.encode())]
    if tracestate:
        headers.append(("tracestate", tracestate.encode()))
    return headers


def new_traceparent() -> str:
    """A random, valid W3C traceparent of a sampled root span."""
    trace_id = secrets.token_hex(16)
    span_id = secrets.token_hex(8)
    # All-zero ids are invalid; at 2^-64 odds a redraw is cheaper than a branch on every frame's parse.
    if int(trace_id, 16) == 0 or int(span_id, 16) == 0:
        return new_traceparent()
    return f"00-{trace_id}-{span_id}-01"
