"""The envelope: several captured frames of one partition in one Kafka record.

A record on the captured topic is either one frame (a JSON object, today's form) or an
envelope: a JSON array of frames in stream order, all of one partition. The bridge makes an
envelope of what one read brought for a partition, so at low load (one frame per read) the
record stays a plain frame and nothing waits. Consumers tell the two apart by the headers,
and where headers were lost by the first byte.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from frame_buffer_sdk.errors import FrameBufferError

CONTENT_TYPE_HEADER = "content-type"
FRAME_COUNT_HEADER = "fb-frames"
ENVELOPE_CONTENT_TYPE = b"application/vnd.frame-buffer.envelope+json;v=1"
# An envelope stays well below the producer's and broker's record limit (1 MB by default), so
# splitting a read never produces a record that only fails at the broker.
MAX_FRAMES = 500
MAX_BYTES = 512 * 1024

_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


class EnvelopeError(FrameBufferError, ValueError):
    """A record that says it is an envelope but is not a JSON array."""


def is_envelope(value: bytes) -> bool:
    """Whether a captured record holds several frames: its first non-blank byte opens an array."""
    return value.lstrip()[:1] == b"["


def encode(frames: Sequence[bytes]) -> bytes:
    """One envelope of already-encoded frames, in the given (stream) order."""
    return b"[" + b",".join(frames) + b"]"


def envelope_headers(count: int) -> list[tuple[str, bytes]]:
    return [(CONTENT_TYPE_HEADER, ENVELOPE_CONTENT_TYPE), (FRAME_COUNT_HEADER, str(count).encode())]


def split(value: bytes) -> list[bytes]:
    """Each frame of an envelope as its own JSON bytes, untouched, in order."""
    try:
        return [bytes(raw) for raw in _RAW_LIST.decode(value)]
    except msgspec.DecodeError as exc:
        raise EnvelopeError(f"not a JSON array of frames: {exc}") from None


def chunks(sizes: Sequence[int], max_frames: int = MAX_FRAMES, max_bytes: int = MAX_BYTES) -> list[range]:
    """Index ranges that cut a partition's frames into envelopes within both caps.

    A frame larger than ``max_bytes`` on its own gets a range of its own, so it travels (or
    fails, and is dead-lettered) alone instead of taking its neighbours with it.
    """
    out: list[range] = []
    start = 0
    size = 0
    for i, n in enumerate(sizes):
        if i > start and (i - start >= max_frames or size + n + 1 > max_bytes):
            out.append(range(start, i))
            start, size = i, 0
        size += n + 1
    if start < len(sizes):
        out.append(range(start, len(sizes)))
    return out
