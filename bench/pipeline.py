"""Our pipeline under measurement: bridge and Faust worker(s) as real subprocesses, as deployed.

Started with the CLI (``python -m app.cli worker`` / ``bridge``) and configured only through
the environment. Processors register over the REST API like the SDK does, heartbeat while
the benchmark runs, and consume their ``frames.ready.<id>`` topics in their own consumer
groups, so the worker's lag sampling and backpressure see them as real processors.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.receivers import KafkaReceivers
from bench.scenarios import BenchEnv, System, processor_id
from core.settings import Settings
from devtools.devstack import free_port
from devtools.processes import ChildProcess, settings_env
from frame_buffer_sdk.kafka import ensure_topics
from frame_buffer_sdk.models import ProcessorSpec

log = logging.getLogger(__name__)

# "Ample capacity": utilisation = lag / capacity stays far below ELEVATED at any load measured.
PROCESSOR_CAPACITY = 1_000_000
STATEFUL_CAPABILITIES = frozenset({"ocr"})


class PipelineUnavailable(RuntimeError):
    """A service of our pipeline is not there to run."""


def require_services() -> None:
    missing = [
        f"{m}.{name}" for m, name in (("app.main", "run_worker"), ("bridge.service", "run_bridge")) if not _has(m, name)
    ]
    if missing:
        raise PipelineUnavailable(f"not runnable yet: {', '.join(missing)} missing")


def _has(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


class OurPipeline(System):
    role = "ours"
    fans_out = True

    def __init__(self, env: BenchEnv, workers: int = 1, store: str = "rocksdb://") -> None:
        super().__init__(env)
        self.workers = workers
        self.key = f"ours-{workers}w"
        self.label = f"our pipeline ({workers} worker{'s' if workers > 1 else ''} + 1 bridge)"
        data_dir = env.log_dir / f"{self.key}-data"
        self.settings = [
            Settings.model_validate(
                {
                    "kafka_broker": env.kafka_url,
                    "redis_url": env.redis_url,
                    "app_id": f"fo-{env.ns}",
                    "capture_stream": f"{env.ns}:capture",
                    "capture_group": "bridge",
                    "captured_topic": f"{env.ns}.captured",
                    "dead_letter_topic": f"{env.ns}.dead-letter",
                    "results_topic": f"{env.ns}.results",
                    "control_topic": f"{env.ns}.control",
                    "ready_topic_prefix": f"{env.ns}.ready.",
                    "store": store,
                    "data_dir": str(data_dir / f"worker-{i}"),
                    "web_host": "127.0.0.1",
                    "web_port": free_port(),
                    # Short group timeouts only make joins fast; nothing on the hot path depends on them.
                    "broker_rebalance_timeout": 2.0,
                    "broker_session_timeout": 6.0,
                    "broker_heartbeat_interval": 1.0,
                    "recovery_consistency_check": False,
                    "bridge_metrics_port": 0,
                    "bridge_consumer_name": f"bench-bridge-{env.ns}",
                    "log_level": "warn",
                }
            )
            for i in range(workers)
        ]
        for settings in self.settings:
            Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        self.base_urls = [f"http://127.0.0.1:{s.web_port}" for s in self.settings]
        s0 = self.settings[0]
        self.pids = {cap: processor_id(cap) for cap in env.capabilities}
        self.receivers = KafkaReceivers(
            env.bootstrap,
            {s0.processor_group(pid): s0.ready_topic(pid) for pid in self.pids.values()},
            self.recorder,
            env.security,
        )
        # Replaceable so a worker can be run under a profiler.
        self.worker_argv = [sys.executable, "-m", "app.cli", "worker"]
        self._http: aiohttp.ClientSession | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "start() first"
        return self._http

    async def start(self) -> None:
        await self.start_routing()
        s0 = self.settings[0]
        await self.receivers.start()
        bridge = ChildProcess("bridge", [sys.executable, "-m", "app.cli", "bridge"], settings_env(s0), self.env.log_dir)
        self.children.append(bridge)
        bridge.start()
        await self.start_loadgen("redis", self.env.redis_url, s0.capture_stream)

    async def start_routing(self) -> None:
        """The workers, healthy, with every processor registered and heartbeating."""
        require_services()
        s0 = self.settings[0]
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        for i, settings in enumerate(self.settings):
            worker = ChildProcess(f"worker-{i}", self.worker_argv, settings_env(settings), self.env.log_dir)
            self.children.append(worker)
            worker.start()
        await asyncio.gather(*(self._wait_healthy(i) for i in range(self.workers)))
        await ensure_topics(
            self.env.bootstrap, [(s0.ready_topic(pid), s0.processor_partitions) for pid in self.pids.values()]
        )
        for cap, pid in self.pids.items():
            await self._register(cap, pid)
        await self._wait_registered()
        self._heartbeat = asyncio.create_task(self._heartbeats())

    async def _wait_healthy(self, index: int, limit: float = 90.0) -> None:
        deadline = time.monotonic() + limit
        url = f"{self.base_urls[index]}/health"
        while time.monotonic() < deadline:
            self.children[index].check_alive()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.http.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.25)
        raise RuntimeError(f"worker-{index} not healthy within {limit:.0f} s:\n{self.children[index].tail(30)}")

    async def _register(self, cap: str, pid: str) -> None:
        spec = ProcessorSpec.model_validate(
            {"id": pid, "capabilities": [cap], "capacity": PROCESSOR_CAPACITY, "stateful": cap in STATEFUL_CAPABILITIES}
        )
        for _ in range(10):
            async with self.http.post(
                f"{self.base_urls[0]}/api/v1/processors/register", json=spec.model_dump(mode="json")
            ) as resp:
                if resp.status in (200, 201):
                    return
                body = await resp.text()
            log.info("register %s answered %s: %s; retrying", pid, resp.status, body[:200])
            await asyncio.sleep(0.5)
        raise RuntimeError(f"could not register {pid}: {resp.status} {body[:300]}")

    async def _wait_registered(self, limit: float = 30.0) -> None:
        """Every worker's registry (a GlobalTable) has every processor."""
        deadline = time.monotonic() + limit
        want = set(self.pids.values())
        for base in self.base_urls:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with self.http.get(f"{base}/api/v1/processors/") as resp:
                        if resp.status == 200 and want <= {r["id"] for r in await resp.json()}:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{base} did not list processors {sorted(want)} within {limit:.0f} s")
                await asyncio.sleep(0.2)

    async def _heartbeats(self) -> None:
        """What an SDK processor does: heartbeat well inside HEARTBEAT_INTERVAL."""
        interval = self.settings[0].heartbeat_interval / 2
        while True:
            for pid in self.pids.values():
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with self.http.post(
                        f"{self.base_urls[0]}/api/v1/processors/heartbeat",
                        json={"processor_id": pid, "status": "healthy"},
                    ) as resp:
                        await resp.read()
            await asyncio.sleep(interval)

    async def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.http.get(f"{self.base_urls[0]}/api/v1/frames/stats") as resp:
                stats = await resp.json()
                out["stats"] = {
                    k: stats.get(k) for k in ("captured", "routed", "shed", "deduplicated", "dead_lettered")
                }
            async with self.http.get(f"{self.base_urls[0]}/api/v1/backpressure") as resp:
                bp = await resp.json()
                out["router_level"] = bp.get("router", {}).get("level")
                out["bridges"] = [
                    {k: b.get(k) for k in ("state", "backlog", "mirrored_total", "dead_lettered_total")}
                    for b in bp.get("bridges", [])
                ]
        return out

    async def stop(self) -> None:
        await self.stop_loadgen()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.receivers.stop()
        if self._http is not None:
            await self._http.close()
        # Bridge first (it drains into Kafka), then the workers.
        await asyncio.to_thread(self.stop_children)
