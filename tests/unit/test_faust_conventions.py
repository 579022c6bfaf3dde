"""Faust's own command line and conventions: `faust -A app.main ...`, its environment, its worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from yarl import URL

import app.main as main
from app.main import GracefulWorker, create_worker_app, faust_app, required_topics
from core.settings import Settings
from tables import affinity, dedupe, frame_counts, heartbeat_path, load, registry, waiting, worker_stats

REPO = Path(__file__).resolve().parents[2]
TABLE_NAMES = {m.NAME for m in (affinity, dedupe, frame_counts, heartbeat_path, load, registry, waiting, worker_stats)}


def unit_settings(tmp_path: Path, **overrides: Any) -> Settings:
    # Port 1: nothing listens there, so whatever needs a broker fails instead of finding one.
    values: dict[str, Any] = {
        "app_id": "unit-faust-cli",
        "store": "memory://",
        "kafka_broker": "kafka://127.0.0.1:1",
        "data_dir": str(tmp_path / "data"),
        "captured_partitions": 3,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture
def fresh_module_app() -> Iterator[None]:
    main._app_from_environment.cache_clear()
    yield
    main._app_from_environment.cache_clear()


def test_faust_tables_lists_our_tables_without_a_broker(tmp_path: Path) -> None:
    env = unit_settings(tmp_path).as_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "app.main", "--json", "tables"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {row["name"] for row in rows} == TABLE_NAMES
    assert all(row["help"] and not row["help"].startswith("Missing description") for row in rows)


def test_the_module_attribute_app_is_our_faust_app_built_once_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_module_app: None
) -> None:
    for name, value in unit_settings(tmp_path, app_id="unit-module-app").as_env({}).items():
        monkeypatch.setenv(name, value)
    built = main.app
    assert isinstance(built, faust.App)
    assert built.conf.id == "unit-module-app"
    assert {table.name for table in built.tables.values()} == TABLE_NAMES
    assert main.app is built
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = main.no_such_thing  # type: ignore[attr-defined]


def test_faust_variables_in_the_environment_do_not_override_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_URL", "kafka://stray-broker:9092")
    monkeypatch.setenv("TOPIC_PARTITIONS", "99")
    monkeypatch.setenv("WEB_HOST", "stray-host")
    monkeypatch.setenv("WEB_BIND", "10.99.99.99")
    monkeypatch.setenv("APP_ENV_PREFIX", "STRAY_")
    settings = unit_settings(
        tmp_path, kafka_broker="kafka://ours:9092", web_host="127.0.0.1", web_advertised_host="advertised"
    )
    conf = faust_app(settings).conf
    assert conf.broker == [URL("kafka://ours:9092")]
    assert conf.topic_partitions == 3
    assert conf.web_bind == "127.0.0.1"
    assert conf.web_host == "advertised"
    assert conf.canonical_url == URL(f"http://advertised:{settings.web_port}")


def test_the_app_runs_in_a_graceful_worker_bound_to_its_settings(tmp_path: Path) -> None:
    settings = unit_settings(tmp_path, shutdown_grace_seconds=3.5)
    worker_class = faust_app(settings).conf.Worker
    assert issubclass(worker_class, GracefulWorker)
    assert worker_class.settings is settings


async def test_the_worker_creates_the_shared_topics_and_sets_up_tracing_before_the_app_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = unit_settings(tmp_path, shutdown_grace_seconds=3.5, otel_service_name="unit-svc")
    calls: list[tuple[str, Any]] = []

    async def ensure_topics(servers: str, topics: list[tuple[str, int]], replication: int, **kwargs: Any) -> None:
        calls.append(("topics", (servers, list(topics), replication)))

    async def faust_first_start(self: faust.Worker) -> None:
        calls.append(("faust", None))

    monkeypatch.setattr(main, "ensure_topics", ensure_topics)
    monkeypatch.setattr(main, "setup_tracing", lambda *args: calls.append(("tracing", args)))
    # Faust's part sets up logging and signal handlers for a process; not in a test.
    monkeypatch.setattr(faust.Worker, "on_first_start", faust_first_start)
    built = create_worker_app(settings)
    worker = built.app.conf.Worker(built.app)
    assert worker.spinner is None
    assert worker.shutdown_grace == 3.5
    await worker.on_first_start()
    assert calls == [
        ("faust", None),
        ("topics", ("127.0.0.1:1", required_topics(settings), 1)),
        ("tracing", ("unit-svc", None, 1.0)),
    ]


async def test_a_routed_record_refused_for_good_crashes_the_worker_running_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    armed: list[tuple[float, str]] = []
    monkeypatch.setattr(main, "exit_after", lambda grace, service: armed.append((grace, service)))
    built = create_worker_app(unit_settings(tmp_path, shutdown_grace_seconds=3.5))
    worker = built.app.conf.Worker(built.app)
    list(worker.on_init_dependencies())  # attaches the app under the worker, as starting it does
    refused = RuntimeError("refused by the broker")
    assert built.routing.on_fatal is not None
    built.routing.on_fatal(refused)
    built.routing.on_fatal(RuntimeError("a second failure"))
    assert len(main._CRASHING) == 1
    await asyncio.gather(*main._CRASHING.values())
    assert worker.crashed
    assert worker.crash_reason is refused
    # Its stop is bounded as a signalled one is.
    assert armed == [(3.5, "worker")]
