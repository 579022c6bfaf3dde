"""Keep-latest-per-camera: "camera_id|capability" -> the newest waiting frame.

The value is {"frame_id", "seq"} (agents.latest_waiting.Held; a bare frame id from earlier
versions). Written by route_frames when it holds a sheddable frame, coalesced to at most once
per partition per tick; read by drain_waiting to shed every older frame of that camera.
Co-partitioned with the captured and waiting topics.
"""

from __future__ import annotations

from typing import Any

import faust

NAME = "latest_waiting"


def define_waiting(app: faust.App, partitions: int) -> Any:
    return app.Table(
        NAME,
        default=str,
        partitions=partitions,
        help="Newest held frame per camera and capability; older held frames are shed.",
    )
