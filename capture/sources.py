"""Which cameras to read: ``--source [ID=]URL`` arguments or a YAML/JSON file of them."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.models import CAPABILITY_RE
from frame_buffer_sdk.redact import redact_text

# Network schemes FFmpeg reads as live streams: they pace themselves and end only when dropped.
STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "srt", "rtp"})
_CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ID_PREFIX_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,99})=(.+)$")


class SourceError(FrameBufferError, ValueError):
    """A camera description that cannot be used, naming the camera and the field."""


@dataclass(frozen=True, slots=True)
class CameraSource:
    """One camera: where its stream is, and how many frames a second to publish of it.

    ``kind`` is ``stream`` (a network URL), ``device`` (V4L2, /dev/videoN) or ``file``.
    Files are read at their own frame rate, as a camera would deliver them, and ``loop``
    starts them over at the end; a stream or device that ends has dropped and is reopened.
    """

    camera_id: str
    url: str
    fps: float
    loop: bool = False
    capabilities: tuple[str, ...] = ()
    priority: int | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _CAMERA_ID_RE.match(self.camera_id):
            raise SourceError(f"camera_id {self.camera_id!r}: letters, digits, '.', '_' and '-' only")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise SourceError(f"camera {self.camera_id}: fps must be > 0, got {self.fps}")
        if not self.url.strip():
            raise SourceError(f"camera {self.camera_id}: url is empty")
        if self.priority is not None and not 0 <= self.priority <= 10:
            raise SourceError(f"camera {self.camera_id}: priority must be within [0, 10], got {self.priority}")
        for cap in self.capabilities:
            if not CAPABILITY_RE.match(cap):
                raise SourceError(f"camera {self.camera_id}: invalid capability name {cap!r}")

    @property
    def kind(self) -> str:
        scheme = urlsplit(self.url).scheme.lower()
        if scheme in STREAM_SCHEMES:
            return "stream"
        if self.url.startswith("/dev/video"):
            return "device"
        return "file"

    @property
    def path(self) -> str:
        """What FFmpeg opens: a ``file://`` URL as its path, anything else as given."""
        return self.url[len("file://") :] if self.url.startswith("file://") else self.url

    @property
    def safe_url(self) -> str:
        """The URL with any password redacted: the only form logs and stream entries carry."""
        return redact_text(self.url)


def parse_source(
    text: str,
    index: int,
    fps: float,
    *,
    loop: bool = False,
    capabilities: tuple[str, ...] = (),
    priority: int | None = None,
) -> CameraSource:
    """``ID=URL`` or a bare URL (camera ``cam-<index>``), with the command line's defaults."""
    match = _ID_PREFIX_RE.match(text)
    # "rtsp://user:pw@host" has no '=' before '://'; an id never holds ':' or '/'.
    if match and "://" not in match.group(1):
        camera_id, url = match.group(1), match.group(2)
    else:
        camera_id, url = f"cam-{index}", text
    return CameraSource(camera_id, url, fps, loop, capabilities, priority)


def load_sources(
    path: Path, fps: float, *, loop: bool = False, capabilities: tuple[str, ...] = (), priority: int | None = None
) -> list[CameraSource]:
    """A YAML or JSON list of ``{camera_id, url, fps?, loop?, capabilities?, priority?, options?}``
    (or ``{"cameras": [...]}``); missing values take the command line's."""
    text = path.read_text(encoding="utf-8")
    try:
        doc: Any = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SourceError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    if isinstance(doc, dict) and "cameras" in doc:
        doc = doc["cameras"]
    if not isinstance(doc, list) or not doc:
        raise SourceError(f"{path}: expected a non-empty list of cameras")
    out = []
    for n, item in enumerate(doc):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise SourceError(f"{path}: camera {n}: expected a mapping with a url")
        caps = item.get("capabilities", list(capabilities))
        if isinstance(caps, str):
            caps = [c.strip() for c in caps.split(",") if c.strip()]
        try:
            out.append(
                CameraSource(
                    camera_id=str(item.get("camera_id", f"cam-{n}")),
                    url=item["url"],
                    fps=float(item.get("fps", fps)),
                    loop=bool(item.get("loop", loop)),
                    capabilities=tuple(str(c) for c in caps),
                    priority=item.get("priority", priority),
                    options={str(k): str(v) for k, v in (item.get("options") or {}).items()},
                )
            )
        except (TypeError, ValueError) as exc:
            raise SourceError(f"{path}: camera {n}: {exc}") from None
    return out


def check_unique(sources: list[CameraSource]) -> None:
    seen: set[str] = set()
    for source in sources:
        if source.camera_id in seen:
            raise SourceError(f"camera_id {source.camera_id!r} is given twice")
        seen.add(source.camera_id)
