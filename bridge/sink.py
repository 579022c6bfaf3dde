"""The Kafka side of the bridge: frames to the captured topic, bad entries to the dead-letter topic."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from app.models import DeadLetter, FrameEvent

Delivery = asyncio.Future[RecordMetadata]


class KafkaSink:
    """Queues records and hands back their delivery futures; the caller awaits a whole batch at once."""

    def __init__(self, producer: AIOKafkaProducer, captured_topic: str, dead_letter_topic: str) -> None:
        self.producer = producer
        self.captured_topic = captured_topic
        self.dead_letter_topic = dead_letter_topic

    async def send_frame(self, frame: FrameEvent, headers: Sequence[tuple[str, bytes]]) -> Delivery:
        # Keyed by camera: one camera's frames share a partition, so their order is kept.
        future: Delivery = await self.producer.send(
            self.captured_topic,
            value=frame.model_dump_json().encode(),
            key=frame.camera_id.encode(),
            headers=list(headers),
        )
        return future

    async def send_dead_letter(self, record: DeadLetter) -> Delivery:
        key = (record.frame_id or record.camera_id or "").encode()
        future: Delivery = await self.producer.send(
            self.dead_letter_topic, value=record.model_dump_json().encode(), key=key
        )
        return future
