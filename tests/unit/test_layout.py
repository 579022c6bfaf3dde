"""The layout reads one way: each floor imports only the floors below it.

frame_buffer_sdk (contracts, the SDK) < core (the orchestrator's ground floor) < agents,
tables, bridge and the other services < app (the Faust app, web, CLI). Dev tooling and the
benchmarks stand apart. Checked on the source, so a new import that climbs fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "frame_buffer_sdk": ROOT / "sdk" / "frame_buffer_sdk",
    **{
        name: ROOT / name
        for name in (
            *("app", "core", "devtools", "agents", "tables", "bridge"),
            *("sample_processors", "capture", "migrate", "relay", "bench"),
        )
    },
}
SERVICES = {"frame_buffer_sdk", "core", "tables"}
# What each package may import of the others; app and bench may import anything.
ALLOWED: dict[str, set[str]] = {
    "frame_buffer_sdk": set(),
    "core": {"frame_buffer_sdk"},
    "tables": {"frame_buffer_sdk", "core"},
    "agents": SERVICES,
    "bridge": SERVICES,
    "capture": SERVICES,
    "migrate": SERVICES,
    "relay": SERVICES,
    "sample_processors": {"frame_buffer_sdk"},
    "devtools": SERVICES | {"capture"},
}


# Services take their own typed config; only app/ (the entrypoints) reads Settings.
TYPED_CONFIG_ONLY = ("agents", "tables", "bridge", "relay", "capture", "migrate")
SETTINGS_MODULES = {"core.settings", "frame_buffer_sdk.settings"}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module ``path`` imports, also under TYPE_CHECKING or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from core import settings` names the module as well
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imported_packages(package: str) -> dict[str, set[str]]:
    """Other project packages each module of ``package`` imports, by module path."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGES[package].rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.setdefault(str(path.relative_to(ROOT)), set()).add(top)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_only_climb_down(package: str) -> None:
    climbing = {
        module: sorted(tops - ALLOWED[package])
        for module, tops in imported_packages(package).items()
        if tops - ALLOWED[package]
    }
    assert not climbing, f"{package} may import only {sorted(ALLOWED[package])}: {climbing}"


@pytest.mark.parametrize("package", TYPED_CONFIG_ONLY)
def test_services_read_no_settings(package: str) -> None:
    reading = sorted(
        str(path.relative_to(ROOT))
        for path in PACKAGES[package].rglob("*.py")
        if imported_modules(path) & SETTINGS_MODULES
    )
    assert not reading, f"take a typed config built in app/configs.py instead of Settings: {reading}"


def test_the_settings_check_sees_imports() -> None:
    # The entrypoints read Settings; a scan that missed them would pass any service.
    assert "core.settings" in imported_modules(PACKAGES["app"] / "configs.py")
    assert "core.settings" in imported_modules(PACKAGES["app"] / "main.py")


def test_the_check_sees_imports() -> None:
    # The app imports every floor below it; a scan that found nothing would pass any rule.
    seen = set().union(*imported_packages("app").values())
    assert {"core", "agents", "tables", "bridge", "frame_buffer_sdk"} <= seen


def test_redis_key_names_have_one_home() -> None:
    # A key built by hand somewhere else drifts from the one its reader builds.
    by_hand = re.compile(r"""f["'](?:frame-done:)?\{[a-z_.]*(?:app_id|namespace)\}:""")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for package, folder in PACKAGES.items()
        if package not in ("bench",)
        for path in folder.rglob("*.py")
        if path != PACKAGES["frame_buffer_sdk"] / "keys.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if by_hand.search(line)
    ]
    assert not found, f"build Redis keys with frame_buffer_sdk.keys: {found}"
    assert by_hand.search((PACKAGES["frame_buffer_sdk"] / "keys.py").read_text(encoding="utf-8"))


def test_every_exception_of_the_project_has_one_root() -> None:
    import importlib
    import inspect
    import pkgutil

    from frame_buffer_sdk.errors import FrameBufferError

    outside = []
    for package in sorted(set(PACKAGES) - {"bench"}):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                own = inspect.isclass(value) and value.__module__ == module.__name__
                public = own and issubclass(value, Exception) and not name.startswith("_")
                if public and not issubclass(value, FrameBufferError):
                    outside.append(f"{module.__name__}.{name}")
    assert not outside, f"derive these from frame_buffer_sdk.errors.FrameBufferError: {outside}"
