"""Playwright driving the system's Chromium (``executable_path``): nothing is downloaded.

``Tab`` is a Playwright page plus what the dashboard tests read off it: the uncaught
JavaScript errors and console messages, a poll of a JavaScript expression that says what the
page showed when it times out, and a screenshot of the content's own size.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser as PlaywrightBrowser
from playwright.async_api import ConsoleMessage, Error, Page

# Playwright adds --headless and --no-sandbox (chromium_sandbox=False) itself.
CHROMIUM_ARGS = (
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


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


@dataclass
class Tab:
    """One page. ``exceptions`` collects uncaught JavaScript errors, ``console`` console messages."""

    page: Page
    exceptions: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("pageerror", lambda error: self.exceptions.append(str(error)))
        self.page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    async def goto(self, url: str, within: float = 15.0) -> None:
        await self.page.goto(url, wait_until="load", timeout=within * 1000)

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises are awaited)."""
        return await self.page.evaluate(expression)

    async def wait_for(self, expression: str, within: float = 15.0, interval: float = 0.1) -> Any:
        """Poll a JavaScript expression until it is truthy (in JavaScript's sense); return its value.

        A DOM node is returned as True: it does not serialise by value.
        """
        probe = f"() => (v => v instanceof Node ? true : v)({expression})"
        try:
            handle = await self.page.wait_for_function(probe, timeout=within * 1000, polling=interval * 1000)
        except Error as exc:
            if "Timeout" not in str(exc):
                raise
            last = f"(() => {{ try {{ return ({probe})(); }} catch (e) {{ return String(e); }} }})()"
            value = await self.page.evaluate(last)
            status = await self.page.evaluate(
                "document.getElementById('status') && document.getElementById('status').textContent"
            )
            raise AssertionError(
                f"{expression!r} stayed falsy ({value!r}) for {within:.0f} s; page status: {status!r}; "
                f"JS exceptions: {self.exceptions}; console: {self.console[-5:]}"
            ) from None
        return await handle.json_value()

    async def screenshot(self, path: Path) -> Path:
        """A PNG of the page's content: all of it, and no empty viewport below it."""
        width, height = await self.evaluate(
            "[document.documentElement.scrollWidth, Math.ceil(document.documentElement.getBoundingClientRect().height)]"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        clip = {"x": 0, "y": 0, "width": width, "height": max(height, 1)}
        await self.page.screenshot(path=str(path), full_page=True, clip=clip)  # type: ignore[arg-type]
        return path


@dataclass
class Browser:
    """A headless Chromium of its own (a throwaway profile), driven by Playwright."""

    browser: PlaywrightBrowser

    async def new_page(self, width: int = 1280, height: int = 900) -> Tab:
        page = await self.browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        return Tab(page)
