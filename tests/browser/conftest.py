"""Fixtures of the browser tests: a real headless Chromium (the system's) driven by Playwright."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    pytest.importorskip("playwright", reason="Playwright is a dev extra: pip install -e '.[dev]'")
    from tests.browser.pages import find_chromium

    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "no Chromium found (looked for CHROMIUM_BIN and chromium/chromium-browser/google-chrome on PATH); "
            "install it with `apt-get install chromium` or run `make browser`"
        )
    return binary


@pytest.fixture
async def browser(chromium_binary: str) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    from tests.browser.pages import CHROMIUM_ARGS, Browser

    async with async_playwright() as playwright:
        # The system's Chromium, never one of Playwright's downloads (`playwright install` is not run).
        running = await playwright.chromium.launch(
            executable_path=chromium_binary, args=list(CHROMIUM_ARGS), chromium_sandbox=False, timeout=30_000
        )
        try:
            yield Browser(running)
        finally:
            await running.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
