"""A demo video for ``make dev``: a figure walking across a room, for the people detector to find.

Written once per run with PyAV (H.264 in mp4) and played in a loop by ``capture --source``, so a
fresh clone shows a real decode, real pixels and real detections without a camera or a download.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
FIGURE_HEIGHT = 200


def draw_figure(canvas: np.ndarray, centre_x: int, top: int, height: int = FIGURE_HEIGHT) -> None:
    """A dark standing figure (head, torso, arms, legs) ``height`` pixels tall, in place."""
    s = height / 300
    dark = (40, 40, 40)

    def rect(x0: float, y0: float, x1: float, y1: float) -> None:
        start = (int(centre_x + x0 * s), int(top + y0 * s))
        end = (int(centre_x + x1 * s), int(top + y1 * s))
        cv2.rectangle(canvas, start, end, dark, -1)

    cv2.circle(canvas, (centre_x, int(top + 25 * s)), int(22 * s), dark, -1)
    rect(-35, 50, 35, 170)  # torso
    rect(-33, 170, -8, 300)  # legs
    rect(8, 170, 33, 300)
    rect(-55, 55, -38, 160)  # arms
    rect(38, 55, 55, 160)


def demo_frame(i: int, count: int) -> np.ndarray:
    """Frame ``i`` of ``count``: the figure's position moves left to right over the clip."""
    canvas = np.full((HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    margin = 90
    x = margin + (WIDTH - 2 * margin) * i // max(1, count - 1)
    # Standing high in the frame: where HOG's 8-pixel window grid finds the figure most often.
    draw_figure(canvas, x, 60)
    return canvas


def write_demo_video(path: Path, seconds: float = 8.0, fps: int = 10) -> Path:
    """Write the clip to ``path`` (kept when it is already there) and return the path."""
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    count = max(1, int(seconds * fps))
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(demo_frame(i, count), format="bgr24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    partial.replace(path)  # a dev run stopped mid-write never leaves a broken clip behind
    return path


if __name__ == "__main__":
    # `python -m capture.demo PATH`: docker-compose's demo-video service writes the clip this way.
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m capture.demo PATH.mp4")
    print(write_demo_video(Path(sys.argv[1])))
