"""``python -m bridge``: the bridge with settings from the environment."""

from bridge.service import run_bridge
from core.settings import load_settings
from frame_buffer_sdk.errors import or_exit

if __name__ == "__main__":
    run_bridge(or_exit(load_settings))
