"""Every Redis key name of Frame Buffer v2, in one place: the orchestrator, the bridge, the
capture, the processors and the migration build their keys here, never by hand.

The camera grid's two keys are shared by the capture (writes), the processors (write) and the
dashboard (reads). Both are hashes with one field per camera, overwritten in place, so their size is the number
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


def backpressure_key(app_id: str) -> str:
    """Written by the orchestrator workers, read by every bridge before each read."""
    return f"{app_id}:backpressure"


def bridge_state_key(app_id: str, consumer: str) -> str:
    """Written by each bridge about itself, read by the orchestrator's /api/v1/backpressure."""
    return f"{app_id}:bridge:{consumer}"


def bridges_key(app_id: str) -> str:
    """Sorted set of bridge consumer names by the time of their last report: where readers find
    the state keys without SCANning a keyspace full of pixel keys."""
    return f"{app_id}:bridges"


def trimmed_unread_key(app_id: str) -> str:
    """How many capture entries were trimmed before any bridge read them; bridges add to it."""
    return f"{app_id}:bridge-trimmed-unread"


def trim_gap_prefix(app_id: str) -> str:
    """Markers of gaps already counted, one per group position, so bridges count each once."""
    return f"{app_id}:bridge-trim-gap:"


def migration_marker_key(app_id: str) -> str:
    """The hash recording how far the migration from v1 got; written by ``migrate.apply`` only."""
    return f"{app_id}:migration:v1"


def done_marker_prefix(namespace: str) -> str:
    """Prefix of the SDK's done markers, one string key per finished (frame, capability) pair."""
    return f"frame-done:{namespace}:"


def done_claim_key(done_key: str) -> str:
    """The short-lived claim on a pair's done marker, held while its result is published."""
    return f"{done_key}|claim"
