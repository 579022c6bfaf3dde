"""``python -m bridge``: the bridge with settings from the environment."""

from app.settings import load_settings
from bridge.service import run_bridge

if __name__ == "__main__":
    run_bridge(load_settings())
