"""Real cameras into the capture stream: decode with PyAV (FFmpeg), sample, claim-check in Redis.

``sources`` says which cameras, ``sampler`` which frames, ``encoding`` how pixels are stored,
``entry`` what the stream entry holds (detektr's rtsp-capture form), ``reader`` decodes one
camera in a thread of its own, and ``service`` runs them all against Redis.
"""

from capture.service import VideoCapture, run_video_capture
from capture.sources import CameraSource, load_sources, parse_source

__all__ = ["CameraSource", "VideoCapture", "load_sources", "parse_source", "run_video_capture"]
