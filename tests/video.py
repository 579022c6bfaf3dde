"""Video made for the capture tests: frames whose pixels say their own number, in files and live streams.

Frame ``i`` is two solid halves, the left in ``PALETTE[i % 8]`` and the right in
``PALETTE[i // 8 % 8]``: the eight corners of the colour cube, far enough apart that H.264 and
JPEG cannot turn one into another. ``frame_number`` reads ``i`` (below 64) back from decoded
pixels; ``distance`` says how far they are from the exact drawing.

``python -m tests.video serve PORT COUNT FPS START`` serves frames START .. START+COUNT-1 as
MPEG-TS (H.264) over TCP, listening on 127.0.0.1:PORT until one client connects. It runs as a
process of its own, because PyAV holds the GIL while an output waits for its client.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

WIDTH, HEIGHT = 160, 120
PALETTE = [(b, g, r) for b in (0, 255) for g in (0, 255) for r in (0, 255)]

Image = npt.NDArray[np.uint8]


def pattern(i: int, width: int = WIDTH, height: int = HEIGHT) -> Image:
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:, : width // 2] = PALETTE[i % 8]
    image[:, width // 2 :] = PALETTE[i // 8 % 8]
    return image


def _colour(region: Image) -> int:
    bits = region.reshape(-1, 3).mean(axis=0) > 127
    return PALETTE.index(tuple(255 if bit else 0 for bit in bits))  # type: ignore[arg-type]


def frame_number(image: Image) -> int:
    """The number drawn into ``image``, read from the middle of each half (codecs blur the seam)."""
    height, width = image.shape[:2]
    rows = slice(height // 4, 3 * height // 4)
    left = image[rows, width // 8 : 3 * width // 8]
    right = image[rows, 5 * width // 8 : 7 * width // 8]
    return _colour(left) + 8 * _colour(right)


def distance(image: Image, i: int) -> float:
    """Mean absolute difference from the exact frame ``i``, away from the seam, 0 to 255."""
    expected = pattern(i, image.shape[1], image.shape[0]).astype(np.int16)
    diff = np.abs(image.astype(np.int16) - expected)
    width = image.shape[1]
    seam = slice(width // 2 - 8, width // 2 + 8)
    diff[:, seam] = 0
    return float(diff.mean())


def _stream(container: av.container.OutputContainer, fps: int) -> av.video.stream.VideoStream:
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "18"}
    return stream


def write_file(path: Path, count: int, fps: int) -> None:
    """An H.264 file (mp4, mkv... by its suffix) of frames 0 .. count-1 at ``fps``."""
    with av.open(str(path), "w") as container:
        stream = _stream(container, fps)
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(pattern(i), format="bgr24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def serve(port: int, count: int, fps: int, start: int) -> None:
    """Frames start .. start+count-1, in real time, to the first client of tcp://127.0.0.1:port."""
    with av.open(f"tcp://127.0.0.1:{port}?listen=1", "w", format="mpegts") as container:
        stream = _stream(container, fps)
        began = time.monotonic()
        for n in range(count):
            frame = av.VideoFrame.from_ndarray(pattern(start + n), format="bgr24")
            frame.pts = n
            container.mux(stream.encode(frame))
            time.sleep(max(0.0, began + (n + 1) / fps - time.monotonic()))
        container.mux(stream.encode(None))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.video")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("port", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("fps", type=int)
    parser.add_argument("start", type=int)
    args = parser.parse_args()
    serve(args.port, args.count, args.fps, args.start)
