"""The camera grid page of a real worker in a real Chromium: each camera's card, its stats, and
the thumbnail with the detector's box drawn on it, as the browser shows it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest

from app.camera_grid import THUMB_WIDTH
from core.settings import Settings
from tests.integration.test_camera_grid import BOX, GREEN, detect_once, grid_worker
from tests.video import WIDTH

if TYPE_CHECKING:  # Playwright is imported only where a browser runs: without it, the tests skip
    from tests.browser.pages import Browser

pytestmark = pytest.mark.browser


async def test_the_grid_shows_each_camera_with_its_boxes(
    browser: Browser, make_settings: Callable[..., Settings], tmp_path: Path, unique: str, artifacts: Path
) -> None:
    settings = make_settings()
    camera = f"gate-{unique}"
    async with grid_worker(settings, tmp_path, camera) as url:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/api/v1/camera-grid") as resp:
            latest_id = (await resp.json())["cameras"][0]["frame_id"]
        await detect_once(settings, camera, latest_id, BOX)

        page = await browser.new_page()
        await page.goto(f"{url}/cameras")
        cards = "Array.from(document.querySelectorAll('.cam'))"
        card = f"{cards}.find(c => c.querySelector('.id').textContent === '{camera}')"
        await page.wait_for(card, within=30)
        # Detections are read anew within the grid's cache time; the card says so, then its image loads.
        await page.wait_for(f"{card}.querySelector('.stats').textContent.includes('object_detection: 1')", within=30)
        img = f"{card}.querySelector('img')"
        await page.wait_for(f"{img}.complete && {img}.naturalWidth > 0", within=30)
        # The pixels the browser decoded: the box's edges are the detector's green.
        scale = THUMB_WIDTH / WIDTH
        x, y, w, h = (round(v * scale) for v in BOX)
        edges = [(x, y + h // 2), (x + w, y + h // 2), (x + w // 2, y), (x + w // 2, y + h)]
        seen = await page.evaluate(
            f"""(() => {{
                const img = {img};
                const canvas = document.createElement('canvas');
                canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
                const ctx = canvas.getContext('2d');
                ctx.drawImage(img, 0, 0);
                return {{
                    width: img.naturalWidth,
                    edges: {json.dumps(edges)}.map(
                        ([px, py]) => Array.from(ctx.getImageData(px, py, 1, 1).data.slice(0, 3))
                    ),
                }};
            }})()"""
        )
        await page.screenshot(artifacts / "camera-grid.png")
        assert seen["width"] == THUMB_WIDTH
        green_rgb = [int(GREEN[2]), int(GREEN[1]), int(GREEN[0])]  # GREEN is BGR, the canvas RGB
        for (px, py), rgb in zip(edges, seen["edges"], strict=True):
            assert max(abs(a - b) for a, b in zip(rgb, green_rgb, strict=True)) < 60, ((px, py), rgb)
