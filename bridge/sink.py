"""The Kafka side of the bridge: frames to the captured topic, bad entries to the dead-letter topic."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from core import envelope
from core.partitions import PartitionCache
from frame_buffer_sdk.models import DeadLetter, FrameEvent

Delivery = asyncio.Future[RecordMetadata]


class KafkaSink:
    """Queues records and hands back their delivery futures; the caller awaits a whole batch at once."""

    def __init__(self, producer: AIOKafkaProducer, captured_topic: str, dead_letter_topic: str) -> None:
        self.producer = producer
        self.captured_topic = captured_topic
        self.dead_letter_topic = dead_letter_topic
        self._partitions = PartitionCache(producer)

    async def partition_of(self, camera_id: str) -> int:
        """The captured partition of a camera: the one a keyed send would pick, so order per camera holds."""
        return await self._partitions.partition(self.captured_topic, camera_id.encode())

    async def send_frame(
        self, frame: FrameEvent, value: bytes, headers: Sequence[tuple[str, bytes]], partition: int
    ) -> Delivery:
        future: Delivery = await self.producer.send(
            self.captured_topic, value=value, key=frame.camera_id.encode(), headers=list(headers), partition=partition
        )
        return future

    async def send_envelope(self, values: Sequence[bytes], first: FrameEvent, partition: int) -> Delivery:
        """Several frames of one partition as one record. Keyed by its first frame's camera: every
        camera in it hashes to this partition, which is what the key is for."""
        future: Delivery = await self.producer.send(
            self.captured_topic,
            value=envelope.encode(values),
            key=first.camera_id.encode(),
            headers=envelope.envelope_headers(len(values)),
            partition=partition,
        )
        return future

    async def send_dead_letter(self, record: DeadLetter) -> Delivery:
        key = (record.frame_id or record.camera_id or "").encode()
        future: Delivery = await self.producer.send(
            self.dead_letter_topic, value=record.model_dump_json().encode(), key=key
        )
        return future
