"""Fixtures of the browser tests: a real headless Chromium driven over CDP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser.cdp import Browser, find_chromium, launch

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "no Chromium found (looked for CHROMIUM_BIN and chromium/chromium-browser/google-chrome on PATH); "
            "install it with `apt-get install chromium` or run `make browser`"
        )
    return binary


@pytest.fixture
async def browser(chromium_binary: str) -> AsyncIterator[Browser]:
    async with launch(chromium_binary) as running:
        yield running


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
