"""`pip install ./sdk` into a fresh venv: the SDK alone, no Faust, no RocksDB, no orchestrator."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
import importlib, importlib.util, pkgutil, sys
import frame_buffer_sdk
for m in pkgutil.walk_packages(frame_buffer_sdk.__path__, "frame_buffer_sdk."):
    importlib.import_module(m.name)
absent = ["faust", "rocksdict", "mode", "app", "agents", "tables", "bridge", "numpy", "cv2"]
present = [name for name in absent if importlib.util.find_spec(name) is not None]
assert not present, f"installed with the SDK: {present}"
from frame_buffer_sdk import ProcessorClient, ProcessorSettings
settings = ProcessorSettings()
assert settings.processor_metrics_port == 9200
print("ok", frame_buffer_sdk.__file__)
"""


def test_the_sdk_installs_alone_into_a_fresh_venv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # A copy: building in place would leave build/ and egg-info in the checkout.
    source = shutil.copytree(ROOT / "sdk", tmp_path / "sdk", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # Run from outside the repository, so nothing of the checkout is importable by accident.
    run = subprocess.run([str(python), "-I", "-c", CHECK], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert str(env_dir) in run.stdout, run.stdout
    assert sys.prefix not in run.stdout
