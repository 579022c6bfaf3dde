"""``python -m bridge``: the bridge with settings from the environment."""

from bridge.service import run_bridge
from core.settings import load_settings

if __name__ == "__main__":
    run_bridge(load_settings())
