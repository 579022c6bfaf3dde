"""A small Chrome DevTools Protocol driver for the browser tests: real headless Chromium, no downloads.

Chromium is started with ``--remote-debugging-port=0`` and writes the port it picked to
``DevToolsActivePort`` in its profile directory; we talk CDP over that websocket with
aiohttp, one flattened session per page.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class CDPError(RuntimeError):
    """Chromium could not be started, or a CDP command failed."""


def find_chromium() -> str | None:
    """CHROMIUM_BIN if set, else the first Chromium-like binary on PATH."""
    explicit = os.environ.get("CHROMIUM_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _Connection:
    """One websocket to the browser; commands are matched to replies by id, events fan out by session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str | None, list[asyncio.Queue[dict[str, Any]]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None) -> Any:
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._ws.send_json(message)
        reply = await future
        if "error" in reply:
            raise CDPError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def listen(self, session_id: str | None) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.setdefault(session_id, []).append(queue)
        return queue

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = msg.json()
                if "id" in data:
                    future = self._pending.pop(data["id"], None)
                    if future is not None and not future.done():
                        future.set_result(data)
                else:
                    for queue in self._listeners.get(data.get("sessionId"), []):
                        queue.put_nowait(data)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CDPError("the browser closed the DevTools connection"))
            self._pending.clear()

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Page:
    """One tab. ``exceptions`` collects uncaught JavaScript errors, ``console`` console messages."""

    def __init__(self, conn: _Connection, session_id: str) -> None:
        self._conn = conn
        self._session = session_id
        self._events = conn.listen(session_id)
        self.exceptions: list[str] = []
        self.console: list[str] = []

    async def send(self, method: str, **params: Any) -> Any:
        return await self._conn.send(method, params, self._session)

    async def _setup(self, width: int, height: int) -> None:
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
        )

    def _drain(self) -> None:
        while not self._events.empty():
            self._note(self._events.get_nowait())

    def _note(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.exceptions.append(str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Runtime.consoleAPICalled":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"{params.get('type')}: {args}")

    async def goto(self, url: str, within: float = 15.0) -> None:
        self._drain()
        reply = await self.send("Page.navigate", url=url)
        if reply.get("errorText"):
            raise CDPError(f"navigating to {url} failed: {reply['errorText']}")
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CDPError(f"{url} did not finish loading within {within:.0f} s")
            try:
                event = await asyncio.wait_for(self._events.get(), remaining)
            except TimeoutError:
                continue
            self._note(event)
            if event.get("method") == "Page.loadEventFired":
                return

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises are awaited)."""
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        self._drain()
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"evaluating {expression!r} threw: {text}")
        return reply.get("result", {}).get("value")

    async def wait_for(self, expression: str, within: float = 15.0, interval: float = 0.1) -> Any:
        """Poll a JavaScript expression until it is truthy (in JavaScript's sense); return its value.

        A DOM node is returned as True: it does not serialise by value.
        """
        probe = f"(v => [!!v, v instanceof Node ? true : v])({expression})"
        deadline = time.monotonic() + within
        value: Any = None
        while time.monotonic() < deadline:
            truthy, value = await self.evaluate(probe)
            if truthy:
                return value
            await asyncio.sleep(interval)
        status = await self.evaluate(
            "document.getElementById('status') && document.getElementById('status').textContent"
        )
        raise AssertionError(
            f"{expression!r} stayed falsy ({value!r}) for {within:.0f} s; page status: {status!r}; "
            f"JS exceptions: {self.exceptions}; console: {self.console[-5:]}"
        )

    async def screenshot(self, path: Path) -> Path:
        """A PNG of the page's content: all of it, and no empty viewport below it."""
        width, height = await self.evaluate(
            "[document.documentElement.scrollWidth, Math.ceil(document.documentElement.getBoundingClientRect().height)]"
        )
        clip = {"x": 0, "y": 0, "width": width, "height": max(height, 1), "scale": 1}
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))
        return path


class Browser:
    """A headless Chromium process of its own, with a throwaway profile."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    async def new_page(self, width: int = 1280, height: int = 900) -> Page:
        target = await self._conn.send("Target.createTarget", {"url": "about:blank"})
        attached = await self._conn.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self._conn, attached["sessionId"])
        await page._setup(width, height)
        return page


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _start(binary: str, profile: Path, log: Path) -> subprocess.Popen[bytes]:
    argv = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]
    with log.open("wb") as log_file:
        return subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def _read_devtools_port(profile: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CDPError(f"chromium exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        if marker.exists():
            lines = marker.read_text().splitlines()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)
    raise CDPError(
        f"chromium opened no DevTools port within {timeout:.0f} s: {log.read_text(errors='replace')[-2000:]}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # Chromium forks helpers into the session it leads; signal that group, which is ours alone.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.asynccontextmanager
async def launch(binary: str, startup_timeout: float = 30.0) -> AsyncIterator[Browser]:
    """Start Chromium, yield a connected Browser, and stop it (and its profile) afterwards."""
    with tempfile.TemporaryDirectory(prefix="fb-chromium-") as tmp:
        profile = Path(tmp) / "profile"
        log = Path(tmp) / "chromium.log"
        proc = await asyncio.to_thread(_start, binary, profile, log)
        try:
            ws_url = await asyncio.to_thread(_read_devtools_port, profile, proc, log, startup_timeout)
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(ws_url, max_msg_size=0)
                conn = _Connection(ws)
                try:
                    yield Browser(conn)
                finally:
                    await conn.close()
        finally:
            await asyncio.to_thread(_stop, proc)
