"""Redis keys of the camera grid, shared by the capture (writes), the processors (write) and the dashboard (reads).

Both are hashes with one field per camera, overwritten in place, so their size is the number
of cameras (times capabilities), never the number of frames, and the dashboard reads them
with one HGETALL instead of a SCAN.
"""

from __future__ import annotations


def latest_frames_key(app_id: str) -> str:
    """Field ``camera_id``: JSON of the camera's latest published frame and its fps in."""
    return f"{app_id}:cameras:latest"


def latest_detections_key(app_id: str) -> str:
    """Field ``camera_id/capability``: JSON of the latest detections of that camera by that capability."""
    return f"{app_id}:cameras:detections"


def detections_field(camera_id: str, capability: str) -> str:
    return f"{camera_id}/{capability}"
