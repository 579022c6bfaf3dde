"""``python -m sample_processors KIND [ID]``: run a sample processor with settings from the environment."""

from __future__ import annotations

import argparse

from frame_buffer_sdk.errors import or_exit
from frame_buffer_sdk.settings import load_processor_settings
from sample_processors.samples import SAMPLE_KINDS, run_sample


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sample_processors", description="Run a sample processor.")
    parser.add_argument("kind", choices=SAMPLE_KINDS)
    parser.add_argument("processor_id", nargs="?", default=None, help="default: KIND-1")
    parser.add_argument("--capabilities", default=None, help="comma-separated (default: the sample's)")
    parser.add_argument("--capacity", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args(argv)
    capabilities = [c.strip() for c in args.capabilities.split(",") if c.strip()] if args.capabilities else None
    run_sample(
        or_exit(load_processor_settings),
        args.kind,
        processor_id=args.processor_id,
        capabilities=capabilities,
        capacity=args.capacity,
        latency_ms=args.latency_ms,
        concurrency=args.concurrency,
    )


if __name__ == "__main__":
    main()
