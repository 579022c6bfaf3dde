"""The worker's consumer thread sets aiokafka's prefetch backoff; aiokafka must still read it."""

from __future__ import annotations

import inspect
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from aiokafka.consumer.fetcher import Fetcher
from faust.transport.drivers import aiokafka as faust_aiokafka

from app.main import create_worker_app
from app.transport import PREFETCH_BACKOFF_SECONDS
from tests.unit.test_faust_conventions import unit_settings


def test_aiokafka_still_takes_each_fetch_results_backoff_from_the_attribute_set() -> None:
    assert version("aiokafka").startswith("0.14.")
    assert inspect.signature(Fetcher.__init__).parameters["prefetch_backoff"].default == 0.1
    source = inspect.getsource(Fetcher)
    assert "self._prefetch_backoff = prefetch_backoff" in source
    assert "backoff=self._prefetch_backoff" in source


async def test_the_worker_consumer_starts_without_a_prefetch_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = create_worker_app(unit_settings(tmp_path))
    thread: Any = built.app.consumer._thread

    class Started:
        _fetcher = type("FetcherStub", (), {"_prefetch_backoff": 0.1})()

    async def start_without_a_broker(self: Any) -> None:
        self._consumer = Started()

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "on_start", start_without_a_broker)
    await thread.on_start()
    assert thread._consumer._fetcher._prefetch_backoff == PREFETCH_BACKOFF_SECONDS == 0.0
