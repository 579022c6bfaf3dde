"""One trace per frame, across bridge, router and processor (issue 5 §1).

Each hop runs its real code in this process so one in-memory exporter sees every span:
the bridge against real Redis and Kafka, the router agent through test_context() fed the
record the bridge wrote (headers included), the SDK pipeline consuming the real ready
topic and publishing to the real results topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.configs import bridge_config
from app.main import create_worker_app
from bridge.service import Bridge
from core.settings import Settings
from frame_buffer_sdk.client import ProcessorClient
from frame_buffer_sdk.frame import Frame
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.telemetry import setup_tracing
from tests.integration.cluster import assign_from_start
from tests.unit.router_fakes import Sent

pytestmark = pytest.mark.integration

CAPTURE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CAPTURE_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(SimpleSpanProcessor(memory))
    else:
        setup_tracing("frame-buffer-tests", extra_processors=[SimpleSpanProcessor(memory)])
    yield memory


async def first_record(settings: Settings, topic: str, within: float = 30) -> Any:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        # The results topic is created by the processor, which may not have started yet.
        await assign_from_start(consumer, topic, within)
        return await asyncio.wait_for(consumer.getone(), within)
    finally:
        await consumer.stop()


def traceparent(headers: Any) -> tuple[str, str]:
    value = dict(headers)["traceparent"]
    parts = (value.decode() if isinstance(value, bytes) else value).split("-")
    return parts[1], parts[2]


def span_named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [s for s in spans if s.name == name]
    assert len(matching) == 1, [s.name for s in spans]
    return matching[0]


class Acked(Sent):
    """The router's fake producer, acknowledging each record as Kafka would (with an offset)."""

    async def send(self, topic: str, key: bytes, value: bytes, headers: Any = None) -> asyncio.Future[Any]:
        self.hold = True
        future = await super().send(topic, key, value, headers)
        future.set_result(SimpleNamespace(topic=topic, partition=0, offset=41))
        return future


async def test_spans_of_one_frame_share_a_trace_and_chain(make_settings: Any, exporter: InMemorySpanExporter) -> None:
    settings: Settings = make_settings(captured_partitions=1, processor_partitions=1)
    exporter.clear()
    redis = aioredis.Redis.from_url(settings.redis_url)
    pixels_key = f"{settings.app_id}:px:1"
    await redis.set(pixels_key, bytes(range(16)), ex=60)
    await redis.xadd(
        settings.capture_stream,
        {
            "frame_id": "traced-1",
            "camera_id": "cam-1",
            "timestamp": "2026-11-27T05:00:00+00:00",
            "width": "4",
            "height": "4",
            "format": "gray8",
            "capabilities": "object_detection",
            "frame_key": pixels_key,
            "traceparent": f"00-{CAPTURE_TRACE}-{CAPTURE_SPAN}-01",
        },
    )

    # Hop 1: the bridge, Redis -> frames.captured.
    bridge = Bridge(bridge_config(settings), redis=redis)
    serving = asyncio.ensure_future(bridge.serve())
    captured = await first_record(settings, settings.captured_topic)
    await bridge.close()
    await serving

    # Hop 2: the routing agent, given the record exactly as Kafka holds it.
    sent = Acked()
    built = create_worker_app(settings, sender=sent)
    built.app.finalize()
    built.app.flow_control.resume()
    from agents.routing import ProcessorView

    built.router.update_view([ProcessorView(id="det", capabilities=frozenset({"object_detection"}), capacity=10)])
    async with built.route_frames.test_context() as agent:
        await agent.put(captured.value, key=captured.key, headers=list(captured.headers))
    routed = [
        (r["key"], json.dumps(r["value"]).encode(), r["headers"]) for r in sent.records[settings.ready_topic("det")]
    ]
    assert len(routed) == 1

    # Hop 3: the processor SDK consumes the real ready topic and publishes the result.
    await ensure_topics(settings.bootstrap_servers, [(settings.ready_topic("det"), 1)])
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    key, value, headers = routed[0]
    await producer.send_and_wait(settings.ready_topic("det"), value, key=key, headers=headers)
    await producer.stop()

    async def process(frame: Frame) -> dict[str, Any]:
        return {"bytes": len(frame.pixels or b"")}

    client = ProcessorClient(settings, "det", ["object_detection"], process)
    consuming = asyncio.ensure_future(client.consume())
    result = await first_record(settings, settings.results_topic)
    client.request_stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(consuming, 20)
    await redis.aclose()

    spans = exporter.get_finished_spans()
    bridge_span = span_named(spans, "bridge.mirror")
    router_span = span_named(spans, "router.route")
    process_span = span_named(spans, "processor.process")
    for span in (bridge_span, router_span, process_span):
        assert format(span.context.trace_id, "032x") == CAPTURE_TRACE, span.name
    assert bridge_span.parent is not None and format(bridge_span.parent.span_id, "016x") == CAPTURE_SPAN
    assert router_span.parent is not None and router_span.parent.span_id == bridge_span.context.span_id
    assert process_span.parent is not None and process_span.parent.span_id == router_span.context.span_id
    assert dict(router_span.attributes or {})["frame.id"] == "traced-1"
    assert dict(router_span.attributes or {})["processor.id"] == "det"
    assert "routing.reason" in dict(router_span.attributes or {})
    # OpenTelemetry messaging semantic conventions on every hop.
    bridge_attrs = dict(bridge_span.attributes or {})
    assert bridge_attrs["messaging.system"] == "kafka"
    assert bridge_attrs["messaging.operation.type"] == "publish"
    assert bridge_attrs["messaging.destination.name"] == settings.captured_topic
    assert bridge_attrs["messaging.kafka.message.key"] == "cam-1"
    assert bridge_attrs["messaging.kafka.offset"] == captured.offset
    assert bridge_attrs["messaging.destination.partition.id"] == str(captured.partition)
    router_attrs = dict(router_span.attributes or {})
    assert router_attrs["messaging.system"] == "kafka"
    assert router_attrs["messaging.operation.type"] == "publish"
    assert router_attrs["messaging.destination.name"] == settings.ready_topic("det")
    assert router_attrs["messaging.kafka.message.key"] == "cam-1"
    assert router_attrs["messaging.consumer.group.name"] == settings.app_id
    assert router_attrs["messaging.kafka.offset"] == 41  # set on the acknowledgement: the span ends after it
    process_attrs = dict(process_span.attributes or {})
    assert process_attrs["messaging.system"] == "kafka"
    assert process_attrs["messaging.operation.type"] == "process"
    assert process_attrs["messaging.destination.name"] == settings.ready_topic("det")
    assert process_attrs["messaging.kafka.message.key"] == "cam-1"
    assert process_attrs["messaging.kafka.offset"] == 0
    assert process_attrs["messaging.consumer.group.name"] == client.group
    # The result record carries the trace on, from the processing span.
    assert traceparent(result.headers) == (CAPTURE_TRACE, format(process_span.context.span_id, "016x"))
    assert json.loads(result.value)["frame_id"] == "traced-1"
