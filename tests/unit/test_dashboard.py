"""The dashboard route of a Faust worker: GET / answers the inlined, offline page."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import faust
import pytest
from aiohttp import web

from app.dashboard import dashboard_html, register_dashboard
from devtools.devstack import free_port


def _app(**conf: Any) -> faust.App:
    return faust.App("dashboard-test", broker="kafka://127.0.0.1:1", store="memory://", web_port=free_port(), **conf)


def test_page_is_self_contained() -> None:
    html = dashboard_html()
    assert "<style>" in html and "<script>" in html
    assert "static/dashboard" not in html, "stylesheet and script are inlined"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "nothing is loaded from another host"
    for anchor in ('id="rate-captured"', 'id="total-routed"', 'id="processors"', 'id="status"', "/api/v1/backpressure"):
        assert anchor in html


# Faust mounts its own JSON index at "/" in every configuration; the dashboard must win in each.
@pytest.mark.parametrize(
    "conf",
    [{}, {"web_stats_enabled": True}, {"web_router_enabled": False, "web_tables_enabled": False}],
    ids=["defaults", "debug-stats", "no-router-no-tables"],
)
async def test_worker_serves_dashboard_at_root(conf: dict[str, bool]) -> None:
    app = _app(**conf)
    register_dashboard(app)
    app.web.init_server()
    runner = web.AppRunner(app.web.web_app)  # type: ignore[attr-defined]
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/") as resp:
                assert resp.status == 200
                assert resp.content_type == "text/html"
                assert await resp.text() == dashboard_html()
            async with http.get(f"http://127.0.0.1:{port}/router/") as resp:
                assert resp.status == (200 if conf.get("web_router_enabled", True) else 404), "other views stay"
    finally:
        await runner.cleanup()


def test_registering_after_the_server_started_is_refused() -> None:
    app = _app()
    app.web.init_server()
    with pytest.raises(RuntimeError, match="before the Faust web server starts"):
        register_dashboard(app)
