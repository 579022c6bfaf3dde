"""How the SDK calls a processor's function: async or plain, per frame or per batch.

Four kinds of handler, told apart once, when the client is built (``inspect``):

* ``async def process(frame) -> dict``: awaited on the event loop;
* ``def process(frame) -> dict``: run in a worker thread, so a CPU-bound model never blocks
  fetching, Kafka's group heartbeats or the orchestrator's heartbeats. The pool has
  ``concurrency`` threads;
* ``async def process_batch(frames) -> list`` / ``def process_batch(frames) -> list``: one call
  per batch of up to ``max_batch`` frames (collected for at most ``max_wait_ms`` after the
  first); the plain one runs in a worker thread too.

A callable object counts as async when its ``__call__`` is ``async def``; a
``functools.partial`` of an ``async def`` does too.

The batch contract: the result list has one element per frame, in the frames' order. An
element is the frame's result (a dict), or an exception *instance* for that frame alone: a
:class:`RejectFrame` dead-letters it with its reason, any other exception as
``processing_failed``. An exception *raised* by the handler ends the whole batch the same way
(``RejectFrame``: every frame with its reason; anything else: ``processing_failed``). A
result that is not a list, or has the wrong length, dead-letters every frame of the batch as
``invalid_batch_result``.

The timeout (``timeout_seconds``) bounds one call: a frame, or a whole batch. Past it the
frame (every frame of the batch) is dead-lettered ``processing_timeout``. An async handler is
cancelled; a plain one cannot be (Python cannot kill a thread): it runs on in its thread,
its result is discarded when it comes, and that thread is busy until then, so a handler that
never returns takes one of the ``concurrency`` threads for good.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.frame import Frame, ProcessFn

SyncProcessFn = Callable[[Frame], dict[str, Any]]
"""A plain ``def`` handler: run in a worker thread."""

AnyProcessFn = ProcessFn | SyncProcessFn
"""What ``ProcessorClient(process=...)`` takes: an ``async def`` or a plain ``def``."""

BatchItem = dict[str, Any] | Exception
"""One element of a batch handler's answer: the frame's result, or why it failed."""

AsyncBatchProcessFn = Callable[[list[Frame]], Awaitable[Sequence[BatchItem]]]
SyncBatchProcessFn = Callable[[list[Frame]], Sequence[BatchItem]]
BatchProcessFn = AsyncBatchProcessFn | SyncBatchProcessFn
"""What ``ProcessorClient(batch_process=...)`` takes: frames in, one result per frame out."""

Hook = Callable[[], Awaitable[None]] | Callable[[], None]
"""``on_start`` / ``on_stop``: an ``async def`` or a plain ``def`` (run in a thread), no arguments."""


class ProcessingTimeout(FrameBufferError):
    """A call took longer than ``timeout_seconds``: its frames are dead-lettered ``processing_timeout``."""


def is_async_callable(fn: object) -> bool:
    """True for an ``async def``, a partial of one, or an object whose ``__call__`` is one."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the class's, not the instance's
    return not inspect.isfunction(fn) and not inspect.ismethod(fn) and inspect.iscoroutinefunction(call)


@dataclass(frozen=True, slots=True)
class Handler:
    """A user's function with how to call it, decided once."""

    fn: Callable[..., Any]
    is_async: bool
    batch: bool

    @classmethod
    def of(cls, process: AnyProcessFn | None = None, batch_process: BatchProcessFn | None = None) -> Handler:
        if (process is None) == (batch_process is None):
            raise TypeError("give exactly one of process (one frame a call) and batch_process (a list of frames)")
        fn: object = process if process is not None else batch_process
        if not callable(fn):
            raise TypeError(f"the handler must be callable, not {type(fn).__name__}")
        return cls(fn, is_async_callable(fn), batch=batch_process is not None)

    @property
    def kind(self) -> str:
        return f"{'async' if self.is_async else 'sync'} {'batch' if self.batch else 'per-frame'}"


def as_handler(process: Handler | AnyProcessFn) -> Handler:
    return process if isinstance(process, Handler) else Handler.of(process)


def check_options(
    handler: Handler, concurrency: int, max_batch: int, max_wait_ms: float, timeout_seconds: float | None
) -> None:
    """The options that do not fit together, refused when the client or pipeline is built."""
    if concurrency < 1 or max_batch < 1:
        raise ValueError("concurrency and max_batch must be >= 1")
    if max_wait_ms < 0:
        raise ValueError("max_wait_ms must be >= 0")
    if timeout_seconds is not None and timeout_seconds <= 0:
        raise ValueError("timeout_seconds must be > 0 (or None: no limit)")
    if handler.batch and concurrency != 1:
        raise ValueError("a batch handler gets one batch at a time: concurrency must be 1 (size it with max_batch)")


class Invoker:
    """Calls a :class:`Handler`: awaited on the loop when async, in one of ``threads`` worker
    threads when not, within ``timeout`` seconds (None: no limit). The trace context of the
    caller goes along into the thread, so spans the handler opens are children of the frame's."""

    def __init__(self, handler: Handler, threads: int, timeout: float | None, name: str) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout_seconds must be > 0 (or None: no limit)")
        self.handler = handler
        self.timeout = timeout
        self._threads = max(1, threads)
        self._name = name
        self._pool: ThreadPoolExecutor | None = None

    async def __call__(self, arg: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                return await self._call(arg)
        except TimeoutError:
            if deadline.expired():
                raise ProcessingTimeout(f"no result within {self.timeout:g} s") from None
            raise  # the handler's own TimeoutError (say, of a call it made): processing_failed

    async def _call(self, arg: Any) -> Any:
        if self.handler.is_async:
            return await self.handler.fn(arg)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=self._name)
        context = contextvars.copy_context()
        result = await asyncio.get_running_loop().run_in_executor(self._pool, context.run, self.handler.fn, arg)
        if inspect.isawaitable(result):
            # A plain callable handing back an awaitable (a decorator hiding an async def).
            return await result
        return result

    def close(self) -> None:
        """Frees the threads without waiting: a call past its timeout may still be running."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


async def call_hook(hook: Hook | None) -> None:
    """``on_start``/``on_stop``: awaited when async, run in a thread when not."""
    if hook is None:
        return
    if is_async_callable(hook):
        await hook()  # type: ignore[misc]
        return
    result = await asyncio.to_thread(hook)
    if inspect.isawaitable(result):
        await result
