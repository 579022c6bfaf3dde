"""The pure parts of `capture --source`: sampling, camera descriptions, the entry, and what a drop logs."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from capture.entry import entry_fields, frame_buffer_key, new_frame_id
from capture.reader import CameraReader, CapturedFrame, ReaderConfig
from capture.sampler import FpsSampler
from capture.service import VideoCapture, _Camera, _stats
from capture.sources import CameraSource, SourceError, check_unique, load_sources, parse_source
from core.parsing import parse_entry


def kept(sampler: FpsSampler, times: list[Fraction]) -> list[int]:
    return [i for i, t in enumerate(times) if sampler.keep(t)]


def test_sampling_25_fps_to_5_keeps_every_fifth_frame() -> None:
    times = [Fraction(i, 25) for i in range(50)]
    assert kept(FpsSampler(5), times) == list(range(0, 50, 5))


def test_sampling_at_or_above_the_source_rate_keeps_everything() -> None:
    times = [Fraction(i * 1001, 30000) for i in range(60)]  # 29.97 fps
    assert kept(FpsSampler(30), times) == list(range(60))
    assert kept(FpsSampler(10), [Fraction(i, 10) for i in range(20)]) == list(range(20))


def test_sampling_tolerates_times_rounded_to_the_time_base() -> None:
    # 29.97 fps in milliseconds: 0, 33, 67, 100 ... sampled at 29.97 / 3, one frame in three.
    times = [Fraction(round(i * 1001 / 30), 1000) for i in range(90)]
    assert kept(FpsSampler(30000 / 1001 / 3), times) == list(range(0, 90, 3))


def test_a_gap_is_not_made_up_with_a_burst_and_a_restart_starts_over() -> None:
    sampler = FpsSampler(5)
    times = [Fraction(i, 25) for i in range(10)] + [Fraction(100 + i, 25) for i in range(10)]
    assert kept(sampler, times) == [0, 5, 10, 15]
    assert kept(sampler, [Fraction(i, 25) for i in range(6)]) == [0, 5]  # time went backwards


def test_sources_from_the_command_line() -> None:
    plain = parse_source("rtsp://admin:p=ss@10.0.0.5:554/stream1", 3, 5.0)
    assert (plain.camera_id, plain.url, plain.kind) == ("cam-3", "rtsp://admin:p=ss@10.0.0.5:554/stream1", "stream")
    assert plain.safe_url == "rtsp://admin:***@10.0.0.5:554/stream1"
    named = parse_source("front-door=tcp://127.0.0.1:9000", 0, 2.0, loop=True, capabilities=("faces",), priority=7)
    assert (named.camera_id, named.url, named.fps, named.loop) == ("front-door", "tcp://127.0.0.1:9000", 2.0, True)
    assert (named.capabilities, named.priority) == (("faces",), 7)
    assert parse_source("/dev/video0", 0, 1).kind == "device"
    file = parse_source("lobby=file:///videos/lobby.mp4", 0, 1)
    assert (file.kind, file.path) == ("file", "/videos/lobby.mp4")
    with pytest.raises(SourceError, match="fps"):
        parse_source("x.mp4", 0, 0)
    with pytest.raises(SourceError, match="capability"):
        parse_source("x.mp4", 0, 1, capabilities=("no spaces",))
    with pytest.raises(SourceError, match="twice"):
        check_unique([parse_source("a=x.mp4", 0, 1), parse_source("a=y.mp4", 1, 1)])


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_sources_from_a_file(tmp_path: Path, suffix: str) -> None:
    cameras = [
        {"camera_id": "gate", "url": "rtsp://u:pw@gate/1", "fps": 2, "options": {"rtsp_transport": "udp"}},
        {"url": "lobby.mkv", "loop": True, "capabilities": "faces,people"},
    ]
    path = tmp_path / f"cameras{suffix}"
    path.write_text(json.dumps({"cameras": cameras}))  # JSON is YAML too
    gate, lobby = load_sources(path, 5.0, priority=3)
    assert (gate.camera_id, gate.fps, gate.options, gate.priority) == ("gate", 2.0, {"rtsp_transport": "udp"}, 3)
    assert (lobby.camera_id, lobby.fps, lobby.loop, lobby.capabilities) == ("cam-1", 5.0, True, ("faces", "people"))
    path.write_text(json.dumps([{"camera_id": "bad id", "url": "x"}]))
    with pytest.raises(SourceError, match="camera 0"):
        load_sources(path, 5.0)
    path.write_text("[]")
    with pytest.raises(SourceError, match="non-empty"):
        load_sources(path, 5.0)


def test_the_entry_is_read_by_the_bridge_as_rtsp_capture_writes_it() -> None:
    captured = datetime(2026, 12, 1, 20, 0, 0, 250000, tzinfo=UTC).timestamp()
    fid = new_frame_id(captured, "front_door", 7)
    assert fid.startswith("1796155200250_capture_front-door_0007_")
    source = CameraSource("front_door", "rtsp://admin:secret@cam/1", 5.0)
    fields = entry_fields(
        frame_id=fid,
        camera_id="front_door",
        sequence=7,
        captured=captured,
        source_url=source.safe_url,
        width=640,
        height=360,
        fmt="jpeg",
        size_bytes=1234,
        capabilities=("object_detection", "faces"),
        priority=4,
        source_time=1.4,
    )
    assert fields["frame_buffer_key"] == frame_buffer_key(fid) == f"frame:{fid}"
    assert fields["resolution"] == "[640, 360]" and fields["trace_id"] == "None"
    outcome = parse_entry(fields, "1-0")
    assert outcome.frame is not None, outcome.error
    frame = outcome.frame
    assert (frame.frame_id, frame.camera_id, frame.sequence, frame.priority) == (fid, "front_door", 7, 4)
    assert (frame.width, frame.height, frame.format, frame.size_bytes) == (640, 360, "jpeg", 1234)
    assert frame.frame_key == f"frame:{fid}"
    assert frame.captured_at == datetime.fromtimestamp(captured, tz=UTC)
    assert frame.capabilities == ["object_detection", "faces"]
    assert frame.traceparent is not None
    assert frame.metadata["source_url"] == "rtsp://admin:***@cam/1"
    assert frame.metadata["tags"] == {"source_time": 1.4}
    assert "secret" not in json.dumps(fields)


def test_a_camera_that_cannot_connect_retries_with_backoff_and_logs_no_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = threading.Event()
    source = CameraSource("door", "rtsp://admin:hunter2@127.0.0.1:1/stream", 5.0)
    reader = CameraReader(
        source, lambda frame: None, stop, ReaderConfig(backoff_initial=0.05, backoff_max=0.1, open_timeout=1)
    )
    caplog.set_level(logging.INFO, logger="capture.reader")
    thread = threading.Thread(target=reader.run)
    thread.start()
    try:
        deadline = threading.Event()
        for _ in range(100):
            if reader.reconnects >= 3:
                break
            deadline.wait(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert reader.reconnects >= 3
    lines = [r.getMessage() for r in caplog.records if "reconnect" in r.getMessage()]
    assert len(lines) >= 3 and all("camera door:" in line for line in lines)
    assert all("hunter2" not in r.getMessage() for r in caplog.records)
    assert "rtsp://admin:***@127.0.0.1:1/stream" in lines[0]


async def test_a_full_queue_gives_up_its_oldest_frame_and_counts_it() -> None:
    def dropped() -> float:
        labels = {"reason": "publish_backlog"}
        return REGISTRY.get_sample_value("frame_buffer_capture_frames_dropped_total", labels) or 0.0

    source = CameraSource("q-cam", "tcp://127.0.0.1:1", 1.0)
    queue: asyncio.Queue[CapturedFrame | None] = asyncio.Queue(maxsize=2)
    camera = _Camera(source, CameraReader(source, lambda _: None, threading.Event()), queue)
    frames = [CapturedFrame("q-cam", bytes([n]), 1, 1, float(n), float(n)) for n in range(3)]
    before = dropped()
    for frame in frames:
        VideoCapture._offer(camera, frame)
    VideoCapture._offer(camera, None)  # the end is never dropped, whatever waits
    assert [queue.get_nowait() for _ in range(2)] == [frames[2], None]
    assert dropped() == before + 2
    # The metric has no camera label: the camera's own count is in its stats.
    assert _stats(camera)["dropped"] == {"publish_backlog": 2}
    assert _stats(camera)["connected"] is False
