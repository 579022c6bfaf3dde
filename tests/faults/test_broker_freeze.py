"""SIGSTOP, then SIGCONT, of the Kafka broker mid-stream, past every session and heartbeat
deadline: counted exactly (tests/integration/fault_run.py).

A frozen broker accepts connections and answers nothing: every produce, fetch, commit and group
heartbeat waits. The case runs on a broker of its own, so that freezing it stops no other test.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.devstack import DevStack
from tests.integration.cluster import Cluster
from tests.integration.fault_run import (
    FRAMES,
    Pipeline,
    assert_accounted,
    assert_camera_order,
    assert_no_duplicates,
    assert_stats_balance,
    fault_settings,
    run_with_fault,
)

pytestmark = pytest.mark.integration

# Longer than broker_session_timeout (6 s) and heartbeat_misses x heartbeat_interval (6 s).
FROZEN_SECONDS = 10.0


@pytest.fixture
def broker(stack: DevStack) -> Iterator[tuple[DevStack, int]]:
    own = DevStack(redis_url=stack.redis_url, use_env=False).start()
    try:
        pid = own.pid_of("kafka")
        if pid is None:
            pytest.skip(f"the broker is a {own.kafka_kind} container, not a process this test can SIGSTOP")
        yield own, pid
    finally:
        pid = own.pid_of("kafka")
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        own.stop()


@pytest.fixture
def cluster(make_settings: Any, broker: tuple[DevStack, int], tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(fault_settings(make_settings, kafka_broker=broker[0].kafka_url), tmp_path / "logs")
    yield c
    c.close()


# In `make test-faults` only: in one of four runs here the stats stayed 28 processed short of the
# results topic for 30 s after the thaw (the frames were all there), not yet explained.
@pytest.mark.faults_long
async def test_the_broker_frozen_past_every_session_loses_and_repeats_nothing(
    cluster: Cluster, broker: tuple[DevStack, int]
) -> None:
    await freeze_broker(cluster, broker[1], FROZEN_SECONDS)


@pytest.mark.faults_long
async def test_the_broker_frozen_for_30_s_of_a_60_s_stream_loses_and_repeats_nothing(
    cluster: Cluster, broker: tuple[DevStack, int]
) -> None:
    # Past STALL_TIMEOUT (20 s), and within the clients' request timeout (40 s).
    await freeze_broker(cluster, broker[1], 30.0, count=6000)


async def freeze_broker(cluster: Cluster, pid: int, seconds: float, count: int = FRAMES) -> None:
    thawing: list[asyncio.Task[None]] = []

    async def thaw_later() -> None:
        await asyncio.sleep(seconds)
        os.kill(pid, signal.SIGCONT)

    async def freeze(pipeline: Pipeline) -> None:
        os.kill(pid, signal.SIGSTOP)
        # Thawed on its own clock: the frames still being sent wait on the frozen broker.
        thawing.append(asyncio.create_task(thaw_later()))

    async def thaw(pipeline: Pipeline) -> None:
        await thawing[0]

    _, outcome = await run_with_fault(cluster, freeze, thaw, count=count)

    alive = [p.name for p in cluster.procs if p.alive()]
    assert len(alive) == len(cluster.procs), f"only {alive} survived the frozen broker\n{cluster.logs()}"
    assert_accounted(outcome, cluster)
    assert_no_duplicates(outcome)
    assert_camera_order(outcome)
    assert_stats_balance(outcome)
