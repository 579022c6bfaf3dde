"""The SDK's handler kinds without servers: async or plain, per frame or per batch, timeouts,
hooks, and the results reader's dedupe window. The pipeline's outbox is read, not Kafka."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from frame_buffer_sdk import Frame, ProcessorClient, RejectFrame
from frame_buffer_sdk.handlers import BatchItem, BatchProcessFn, Handler, call_hook, is_async_callable
from frame_buffer_sdk.models import RoutedFrame
from frame_buffer_sdk.pipeline import FramePipeline, PipelineConfig
from frame_buffer_sdk.results import RecentKeys
from frame_buffer_sdk.settings import ProcessorSettings


@dataclass
class _Record:
    """The fields of an aiokafka ConsumerRecord the pipeline reads."""

    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "frames.ready.p"
    key: bytes | None = b"cam-a"
    partition: int = 0
    offset: int = 0


def _frame(seq: int) -> Frame:
    now = datetime.now(UTC)
    routed = RoutedFrame(
        frame_id=f"f-{seq}", camera_id="cam-a", captured_at=now, sequence=seq, processor_id="p", capability="c",
        routed_at=now,
    )  # fmt: skip
    return Frame(routed, bytes([seq]) * 4, partition=0, offset=seq)


def _settings() -> ProcessorSettings:
    return ProcessorSettings(processor_metrics_port=0)


@pytest.fixture
async def make_pipeline() -> AsyncIterator[Any]:
    made: list[FramePipeline] = []

    def factory(process: Any, **config: Any) -> FramePipeline:
        pipeline = FramePipeline(_settings(), PipelineConfig("p", "t", "g", **config), process)
        made.append(pipeline)
        return pipeline

    yield factory
    for pipeline in made:
        await pipeline.close()


async def _run(pipeline: FramePipeline, frames: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Processes frames 0..frames-1; returns {frame_id: result} and {frame_id: dead letter}."""
    await pipeline._process_all([(_Record(), _frame(seq)) for seq in range(frames)])  # type: ignore[list-item]
    results: dict[str, Any] = {}
    dead: dict[str, Any] = {}
    for item in pipeline._outbox:
        doc = json.loads(item.value)
        if "reason" in doc:
            dead[doc["frame_id"]] = doc
        else:
            results[doc["frame_id"]] = doc["result"]
    return results, dead


def test_async_is_told_from_plain_for_functions_objects_partials_and_methods() -> None:
    async def a(frame: Frame) -> dict[str, Any]:
        return {}

    def s(frame: Frame) -> dict[str, Any]:
        return {}

    class AsyncCall:
        async def __call__(self, frame: Frame) -> dict[str, Any]:
            return {}

        async def method(self, frame: Frame) -> dict[str, Any]:
            return {}

    class SyncCall:
        def __call__(self, frame: Frame) -> dict[str, Any]:
            return {}

    assert [is_async_callable(f) for f in (a, AsyncCall(), AsyncCall().method, functools.partial(a))] == [True] * 4
    assert [is_async_callable(f) for f in (s, SyncCall(), functools.partial(s), lambda f: f)] == [False] * 4


def test_exactly_one_handler_and_options_that_fit_are_checked_at_construction() -> None:
    def s(frame: Frame) -> dict[str, Any]:
        return {}

    def many(frames: list[Frame]) -> list[BatchItem]:
        return []

    with pytest.raises(TypeError, match="exactly one"):
        ProcessorClient(_settings(), "p", ["c"])
    with pytest.raises(TypeError, match="exactly one"):
        ProcessorClient(_settings(), "p", ["c"], s, batch_process=many)
    with pytest.raises(TypeError, match="callable"):
        Handler.of(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency must be 1"):
        ProcessorClient(_settings(), "p", ["c"], batch_process=many, concurrency=4)
    with pytest.raises(ValueError, match="timeout_seconds"):
        ProcessorClient(_settings(), "p", ["c"], s, timeout_seconds=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        ProcessorClient(_settings(), "p", ["c"], batch_process=many, max_wait_ms=-1)
    assert ProcessorClient(_settings(), "p", ["c"], s).handler.kind == "sync per-frame"
    assert ProcessorClient(_settings(), "p", ["c"], batch_process=many).handler.kind == "sync batch"


async def test_a_plain_def_runs_in_worker_threads_while_the_loop_stays_responsive(make_pipeline: Any) -> None:
    threads: set[str] = set()

    def slow(frame: Frame) -> dict[str, Any]:
        threads.add(threading.current_thread().name)
        time.sleep(0.3)  # a CPU-bound model, as far as the loop can tell
        return {"n": len(frame.pixels)}

    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.02)

    beat = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        results, dead = await _run(make_pipeline(slow, concurrency=2), 4)
    finally:
        beat.cancel()
    assert results == {f"f-{s}": {"n": 4} for s in range(4)} and not dead
    assert threading.main_thread().name not in threads and len(threads) == 2, threads
    assert time.perf_counter() - started < 1.0, "two threads: 4 x 0.3 s in about 0.6 s"
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 10 and max(gaps) < 0.15, "the event loop was blocked"


async def test_reject_and_exceptions_from_a_plain_def_are_dead_lettered(make_pipeline: Any) -> None:
    def picky(frame: Frame) -> Any:
        seq = frame.routed.sequence
        if seq == 1:
            raise RejectFrame("too_dark", "mean 3")
        if seq == 2:
            raise ValueError("user bug")
        if seq == 3:
            return "not a dict"
        return {"ok": seq}

    results, dead = await _run(make_pipeline(picky), 4)
    assert results == {"f-0": {"ok": 0}}
    assert {k: (d["reason"], d["detail"]) for k, d in dead.items()} == {
        "f-1": ("too_dark", "mean 3"),
        "f-2": ("processing_failed", "ValueError: user bug"),
        "f-3": ("invalid_result", "TypeError: process() returned str, not a dict"),
    }


async def test_timeouts_dead_letter_processing_timeout_async_and_plain(make_pipeline: Any) -> None:
    finished: list[int] = []

    async def hangs(frame: Frame) -> dict[str, Any]:
        if frame.routed.sequence == 0:
            await asyncio.sleep(30)
        return {"ok": True}

    def blocks(frame: Frame) -> dict[str, Any]:
        if frame.routed.sequence == 0:
            time.sleep(0.6)
            finished.append(0)
        return {"ok": True}

    for handler in (hangs, blocks):
        started = time.perf_counter()
        results, dead = await _run(make_pipeline(handler, timeout_seconds=0.2, concurrency=2), 2)
        assert time.perf_counter() - started < 0.5
        assert results == {"f-1": {"ok": True}}
        assert dead["f-0"]["reason"] == "processing_timeout" and "0.2 s" in dead["f-0"]["detail"]
    await asyncio.sleep(0.7)
    assert finished == [0], "the thread ran on; its late result was discarded"


async def test_the_handlers_own_timeout_error_is_a_failure_not_a_timeout(make_pipeline: Any) -> None:
    async def calls_out(frame: Frame) -> dict[str, Any]:
        raise TimeoutError("upstream model server")

    _, dead = await _run(make_pipeline(calls_out, timeout_seconds=5), 1)
    assert dead["f-0"]["reason"] == "processing_failed"


@pytest.mark.parametrize("is_async", [True, False])
async def test_batch_handler_gets_all_frames_in_order_and_answers_per_element(
    make_pipeline: Any, is_async: bool
) -> None:
    calls: list[list[str]] = []

    def answer(frames: list[Frame]) -> list[BatchItem]:
        calls.append([f.frame_id for f in frames])
        out: list[BatchItem] = []
        for frame in frames:
            seq = frame.routed.sequence or 0
            out.append(
                RejectFrame("blurry", f"frame {seq}")
                if seq == 1
                else KeyError("box")
                if seq == 2
                else "oops"  # type: ignore[arg-type]
                if seq == 3
                else {"seq": seq}
            )
        return out

    async def answer_async(frames: list[Frame]) -> list[BatchItem]:
        await asyncio.sleep(0)
        return answer(frames)

    handler = Handler.of(batch_process=answer_async if is_async else answer)
    assert handler.is_async is is_async
    results, dead = await _run(make_pipeline(handler, max_batch=8), 6)
    assert calls == [[f"f-{s}" for s in range(6)]], "one call, frames in order"
    assert results == {"f-0": {"seq": 0}, "f-4": {"seq": 4}, "f-5": {"seq": 5}}
    assert {k: d["reason"] for k, d in dead.items()} == {
        "f-1": "blurry",
        "f-2": "processing_failed",
        "f-3": "invalid_result",
    }
    assert dead["f-2"]["detail"] == "KeyError: 'box'"


async def test_a_batch_that_raises_times_out_or_has_the_wrong_shape_dead_letters_every_frame(
    make_pipeline: Any,
) -> None:
    async def raises(frames: list[Frame]) -> list[BatchItem]:
        raise RuntimeError("CUDA out of memory")

    async def rejects(frames: list[Frame]) -> list[BatchItem]:
        raise RejectFrame("model_unloaded", "warming up")

    def short(frames: list[Frame]) -> list[BatchItem]:
        return [{}] * (len(frames) - 1)

    def not_a_list(frames: list[Frame]) -> Sequence[BatchItem]:
        return {"a": 1}  # type: ignore[return-value]

    def slow(frames: list[Frame]) -> list[BatchItem]:
        time.sleep(0.5)
        return [{}] * len(frames)

    expected: dict[BatchProcessFn, tuple[str, str]] = {
        raises: ("processing_failed", "RuntimeError: CUDA out of memory"),
        rejects: ("model_unloaded", "warming up"),
        short: ("invalid_batch_result", "batch_process() returned 2 result(s) for 3 frame(s)"),
        not_a_list: ("invalid_batch_result", "batch_process() returned dict, not a list"),
        slow: ("processing_timeout", "batch_process(): no result within 0.2 s"),
    }
    for fn, (reason, detail) in expected.items():
        pipeline = make_pipeline(Handler.of(batch_process=fn), timeout_seconds=0.2)
        results, dead = await _run(pipeline, 3)
        assert not results, fn
        assert {k: (d["reason"], d["detail"]) for k, d in dead.items()} == {
            f"f-{s}": (reason, detail) for s in range(3)
        }
        assert pipeline.stats.dead_lettered[reason] == 3 and pipeline.stats.processed == 0


async def test_hooks_may_be_async_or_plain_and_plain_ones_run_in_a_thread() -> None:
    seen: list[tuple[str, bool]] = []

    def plain() -> None:
        seen.append(("plain", threading.current_thread() is threading.main_thread()))

    async def coro() -> None:
        seen.append(("async", threading.current_thread() is threading.main_thread()))

    await call_hook(plain)
    await call_hook(coro)
    await call_hook(None)
    assert seen == [("plain", False), ("async", True)]


def test_recent_keys_remembers_a_bounded_window() -> None:
    recent = RecentKeys(2)
    assert [recent.seen(k) for k in ("a", "b", "a", "c", "a", "b")] == [False, False, True, False, True, False]
    # "a" was seen again (refreshed) before "c" came, so "b" was the one forgotten.
    assert len(recent) == 2
    with pytest.raises(ValueError):
        RecentKeys(0)
