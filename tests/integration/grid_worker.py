"""A worker with the camera grid registered: ``run_worker`` with the one line app/main.py is to gain.

``python -m tests.integration.grid_worker`` (settings from the environment). Until the lead adds
``register_camera_grid(app, settings)`` to ``create_worker_app``, this is how a test serves it.
"""

from __future__ import annotations

from typing import Any

import app.main as worker_main
from app.camera_grid import register_camera_grid
from app.settings import Settings, load_settings

_create = worker_main.create_worker_app


def _with_grid(settings: Settings, *args: Any, **kwargs: Any) -> Any:
    built = _create(settings, *args, **kwargs)
    register_camera_grid(built.app, settings)
    return built


if __name__ == "__main__":
    worker_main.create_worker_app = _with_grid  # type: ignore[assignment]
    worker_main.run_worker(load_settings())
