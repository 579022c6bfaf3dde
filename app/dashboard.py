"""The live dashboard: one self-contained HTML page served at GET / by every worker.

The page is three plain files under app/static; they are inlined into one response so the
dashboard needs no static route, no CDN and no build step, and works offline.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import faust
from faust import web

_STATIC = "static"
_CSS_TAG = '<link rel="stylesheet" href="static/dashboard.css">'
_JS_TAG = '<script src="static/dashboard.js"></script>'

# Faust mounts a JSON index at "/" (the production index, or the statistics blueprint in
# debug mode). aiohttp serves the first route that matches, so whichever registered first
# would win; dropping these makes the dashboard own "/" regardless of call order.
_ROOT_BLUEPRINTS = frozenset({"faust.web.apps.production_index:blueprint", "faust.web.apps.stats:blueprint"})


def _static_text(name: str) -> str:
    return resources.files("app").joinpath(_STATIC, name).read_text(encoding="utf-8")


@cache
def dashboard_html() -> str:
    """The dashboard page with its stylesheet and script inlined."""
    html = _static_text("dashboard.html")
    for tag in (_CSS_TAG, _JS_TAG):
        if tag not in html:
            raise RuntimeError(f"app/static/dashboard.html no longer contains {tag!r}; update app/dashboard.py")
    # "</" inside inlined text would end the element early; the files never contain it, but guard anyway.
    css = _static_text("dashboard.css").replace("</", "<\\/")
    js = _static_text("dashboard.js").replace("</", "<\\/")
    return html.replace(_CSS_TAG, f"<style>\n{css}</style>").replace(_JS_TAG, f"<script>\n{js}</script>")


class DashboardView(web.View):
    """GET / : the live dashboard page."""

    async def get(self, request: web.Request) -> web.Response:
        return self.html(dashboard_html(), headers={"Cache-Control": "no-cache"})


def register_dashboard(app: faust.App) -> None:
    """Serve the dashboard at GET / of this Faust app's web server.

    Must be called before the web server starts (when the app is built), since Faust's
    blueprints are fixed once the server initialises.
    """
    manager = app.web.blueprints
    if manager.applied:
        raise RuntimeError("register_dashboard() must be called before the Faust web server starts")
    # BlueprintManager has no public way to withdraw a default blueprint.
    manager._enabled = [(prefix, bp) for prefix, bp in manager._enabled if bp not in _ROOT_BLUEPRINTS]
    app.page("/", name="dashboard")(DashboardView)
