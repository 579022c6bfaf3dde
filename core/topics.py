"""Every Kafka topic the worker uses, declared once.

Values travel as raw JSON bytes (pydantic does the (de)serialization) so the hot path
pays for one parse and one dump per frame, and processors in any language can read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faust
from faust.types import TopicT

from core.settings import Settings


@dataclass
class Topics:
    captured: TopicT
    dead_letter: TopicT
    results: TopicT
    control: TopicT
    load_reports: TopicT
    worker_stats: TopicT
    waiting: TopicT
    _app: faust.App
    _settings: Settings
    _ready: dict[str, TopicT] = field(default_factory=dict)

    def ready(self, processor_id: str) -> TopicT:
        """frames.ready.<id>: declared lazily because processors register at run time."""
        topic = self._ready.get(processor_id)
        if topic is None:
            topic = self._app.topic(
                self._settings.ready_topic(processor_id),
                value_serializer="raw",
                key_serializer="raw",
                acks=True,
            )
            self._ready[processor_id] = topic
        return topic


def define_topics(app: faust.App, settings: Settings) -> Topics:
    def raw(name: str, partitions: int, internal: bool = False) -> TopicT:
        return app.topic(
            name,
            value_serializer="raw",
            key_serializer="raw",
            partitions=partitions,
            internal=internal,
            replicas=settings.topic_replication_factor,
        )

    parts = settings.captured_partitions
    # Control, load and stats feed GlobalTables: one partition each, as Faust's
    # GlobalTable needs its source and changelog partitions to line up on every worker.
    return Topics(
        captured=raw(settings.captured_topic, parts),
        dead_letter=raw(settings.dead_letter_topic, parts),
        results=raw(settings.results_topic, parts),
        control=raw(settings.control_topic, 1),
        load_reports=raw(f"{settings.app_id}-load-reports", 1, internal=True),
        worker_stats=raw(f"{settings.app_id}-worker-stats", 1, internal=True),
        # Held (shed-able) frames wait here, co-partitioned with the captured topic.
        waiting=raw(f"{settings.app_id}-waiting", parts, internal=True),
        _app=app,
        _settings=settings,
    )
