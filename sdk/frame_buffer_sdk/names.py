"""Kafka's rules for topic names, in one place: which names are valid, and which collide.

Kafka refuses a topic whose name differs from an existing one only by '.' versus '_'
(both become '_' in its metric names), so ``det.v2`` and ``det_v2`` cannot both exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TOPIC_LENGTH = 249
TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def collision_key(topic: str) -> str:
    """Equal for two names Kafka would take for the same topic."""
    return topic.replace(".", "_")


def find_collision(topic: str, others: dict[str, str]) -> str | None:
    """The owner (key of ``others``, owner -> topic) of a different topic that collides with ``topic``."""
    key = collision_key(topic)
    for owner, other in others.items():
        if other != topic and collision_key(other) == key:
            return owner
    return None


@dataclass(frozen=True, slots=True)
class ProcessorNames:
    """Each processor's own topic and consumer group, made from the two prefixes."""

    ready_topic_prefix: str
    processor_group_prefix: str

    def ready_topic(self, processor_id: str) -> str:
        return f"{self.ready_topic_prefix}{processor_id}"

    def processor_group(self, processor_id: str) -> str:
        return f"{self.processor_group_prefix}{processor_id}"
