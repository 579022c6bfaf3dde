"""One camera's decode loop, in a thread of its own: open, decode, sample, encode, hand over; reopen when dropped.

PyAV's calls block (and opening a stream holds the GIL until it connects or times out), so
each camera gets a plain thread rather than the event loop. ``deliver`` is called in that
thread with every sampled frame, already encoded; the service moves it to the loop.
A camera that fails, however it fails, only ever retries: it never stops another camera.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from capture.encoding import encode
from capture.sampler import FpsSampler
from capture.sources import CameraSource
from core.metrics import CAPTURE_CONNECTED, CAPTURE_FRAMES_DECODED, CAPTURE_FRAMES_DROPPED, CAPTURE_RECONNECTS
from frame_buffer_sdk.redact import redact_text

log = logging.getLogger(__name__)

# RTSP over TCP: UDP loses packets (and whole frames) on any busy network, and NATs drop it.
_DEFAULT_OPTIONS = {"rtsp": {"rtsp_transport": "tcp"}, "rtsps": {"rtsp_transport": "tcp"}}


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """A sampled frame, encoded as it will be stored."""

    camera_id: str
    pixels: bytes
    width: int
    height: int
    captured: float  # wall-clock epoch seconds when it was decoded
    source_time: float  # its presentation time in the stream, seconds


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    fmt: str = "bgr24"
    jpeg_quality: int = 90
    open_timeout: float = 10.0
    read_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


class _Ended(Exception):
    """The stream ended or failed; the message says how."""


class CameraReader:
    """Reads ``source`` until ``stop`` is set (or, for a file without ``loop``, until its end)."""

    def __init__(
        self,
        source: CameraSource,
        deliver: Callable[[CapturedFrame], None],
        stop: threading.Event,
        config: ReaderConfig | None = None,
    ) -> None:
        self.source = source
        self.deliver = deliver
        self.stop = stop
        self.config = config or ReaderConfig()
        self.sampler = FpsSampler(source.fps)
        self.decoded = 0  # read by the service's fps gauge; only this thread writes it
        self.reconnects = 0
        self.dropped: Counter[str] = Counter()  # by reason, this camera's (the metric sums every camera)
        self.connected = False
        self._camera = source.camera_id

    def run(self) -> None:
        """The thread's body. Returns when stopped, or when a file without ``loop`` is done."""
        backoff = self.config.backoff_initial
        while not self.stop.is_set():
            try:
                frames = self._read_once()
            except Exception as exc:  # FFmpeg, OS and codec errors alike: the camera retries
                # FFmpeg's messages quote the URL it was given, password and all.
                frames, reason = 0, redact_text(f"{type(exc).__name__}: {exc}")
            else:
                reason = "stream ended"
            finally:
                self._set_connected(False)
            if self.stop.is_set():
                return
            if self.source.kind == "file" and reason == "stream ended" and frames:
                if not self.source.loop:
                    log.info("camera %s: %s finished after %d frames", self._camera, self.source.safe_url, frames)
                    return
                continue  # start the file over, at once
            if frames:
                backoff = self.config.backoff_initial  # it worked for a while: a fresh drop
            self.reconnects += 1
            CAPTURE_RECONNECTS.inc()
            log.warning(
                "camera %s: %s (%s); reconnect %d in %.1f s",
                self._camera,
                reason,
                self.source.safe_url,
                self.reconnects,
                backoff,
            )
            self.stop.wait(backoff)
            backoff = min(backoff * 2, self.config.backoff_max)

    def _set_connected(self, connected: bool) -> None:
        """The gauge counts the open cameras of the process: each reader adds or takes its one."""
        if connected != self.connected:
            self.connected = connected
            if connected:
                CAPTURE_CONNECTED.inc()
            else:
                CAPTURE_CONNECTED.dec()

    def _drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        CAPTURE_FRAMES_DROPPED.labels(reason).inc()

    def _open(self) -> av.container.InputContainer:
        scheme = self.source.url.split("://", 1)[0].lower() if "://" in self.source.url else ""
        options = {**_DEFAULT_OPTIONS.get(scheme, {}), **self.source.options}
        return av.open(
            self.source.path,
            format="v4l2" if self.source.kind == "device" else None,
            options=options,
            timeout=(self.config.open_timeout, self.config.read_timeout),
        )

    def _read_once(self) -> int:
        """Open the source and read it to its end; returns the frames decoded."""
        container = self._open()
        decoded = 0
        try:
            if not container.streams.video:
                raise _Ended("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            self._set_connected(True)
            log.info(
                "camera %s: opened %s (%s, %dx%d, %s fps)",
                self._camera,
                self.source.safe_url,
                stream.codec_context.name,
                stream.codec_context.width,
                stream.codec_context.height,
                stream.average_rate,
            )
            self.sampler.reset()
            # Files are delivered at their own pace, as a camera would; live sources pace themselves.
            paced = self.source.kind == "file"
            first: Fraction | None = None
            started = time.monotonic()
            for frame in container.decode(stream):
                if self.stop.is_set():
                    break
                decoded += 1
                self.decoded += 1
                CAPTURE_FRAMES_DECODED.inc()
                if frame.pts is not None and frame.time_base is not None:
                    t = Fraction(frame.pts) * Fraction(frame.time_base)
                else:
                    t = Fraction(time.monotonic()).limit_denominator(1_000_000)
                if paced:
                    first = t if first is None else first
                    ahead = float(t - first) - (time.monotonic() - started)
                    if ahead > 0 and self.stop.wait(ahead):
                        break
                if not self.sampler.keep(t):
                    self._drop("sampled_out")
                    continue
                self._hand_over(frame, float(t))
        finally:
            container.close()
        return decoded

    def _hand_over(self, frame: av.VideoFrame, source_time: float) -> None:
        captured = time.time()
        image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
        try:
            pixels = encode(image, self.config.fmt, self.config.jpeg_quality)
        except ValueError as exc:
            self._drop("encode_failed")
            log.warning("camera %s: frame not encoded: %s", self._camera, exc)
            return
        height, width = image.shape[:2]
        self.deliver(CapturedFrame(self._camera, pixels, width, height, captured, source_time))
