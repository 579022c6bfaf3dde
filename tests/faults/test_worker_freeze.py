"""SIGSTOP, then SIGCONT, of a worker and of the leader, for longer than the group's session
timeout and the processors' heartbeat deadline: counted exactly (tests/integration/fault_run.py).

While a worker is frozen its partitions move to the other worker, which replays what the frozen
one had not committed; on waking, the frozen worker finds itself out of the group and rejoins.
Repeated sends are absorbed by the router's dedupe and the SDK's done markers, so no result is
published twice, and the replayed records and results are not counted twice in the stats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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

# Longer than broker_session_timeout (6 s) plus a rebalance, and than heartbeat_misses x
# heartbeat_interval (6 s): the group moves the frozen worker's partitions and lead meanwhile.
FROZEN_SECONDS = 12.0


@pytest.fixture
def cluster(make_settings: Any, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(fault_settings(make_settings), tmp_path / "logs")
    yield c
    c.close()


async def freeze_and_thaw(
    cluster: Cluster,
    victim: str,
    frozen_seconds: float = FROZEN_SECONDS,
    count: int = FRAMES,
) -> None:
    """``victim`` "worker": the worker that does not lead, and the one the processors register
    with and heartbeat to, so their heartbeat path freezes with it while the leader judges.
    "leader": the leader, while the processors heartbeat to the other worker; its lag sampling
    and health verdicts stop, and the other worker must take the lead."""
    frozen_at = 0.0
    took_lead = False

    def leads_logged(pipeline: Pipeline) -> int:
        survivor = pipeline.workers[1 - pipeline.frozen][0]
        return survivor.log_path.read_text(errors="replace").count("leader: sampling lag and judging health")

    def target(leader: int) -> int:
        return 1 - leader if victim == "worker" else leader

    async def freeze(pipeline: Pipeline) -> None:
        nonlocal frozen_at
        pipeline.frozen = target(pipeline.leader)
        pipeline.workers[pipeline.frozen][0].freeze()
        frozen_at = time.monotonic()
        pipeline.leads_before = leads_logged(pipeline)

    async def thaw(pipeline: Pipeline) -> None:
        nonlocal took_lead
        await asyncio.sleep(max(0.0, frozen_seconds - (time.monotonic() - frozen_at)))
        took_lead = leads_logged(pipeline) > pipeline.leads_before
        pipeline.workers[pipeline.frozen][0].thaw()

    def rest_to(leader: int) -> int:
        return 1 - leader  # the non-leader: the victim in the first case, the survivor in the second

    pipeline, outcome = await run_with_fault(cluster, freeze, thaw, rest_to=rest_to, count=count)

    assert all(proc.alive() for proc, _ in pipeline.workers), cluster.logs()
    if victim == "leader":
        assert took_lead, f"the other worker never took the lead while the leader was frozen\n{cluster.logs()}"
    assert_accounted(outcome, cluster)
    assert_no_duplicates(outcome)
    assert_camera_order(outcome)
    assert_stats_balance(outcome)


# In make test-faults since 2026-12-02 07:00: on the final tree of that session it failed 2 of 4
# runs, with 29 pairs neither processed nor dead-lettered by the end of the settle window and
# 232 tracking frames dead-lettered no_capable_processor during the freeze (issue 10, open).
@pytest.mark.faults_long
async def test_a_worker_frozen_past_its_session_loses_and_repeats_nothing(cluster: Cluster) -> None:
    await freeze_and_thaw(cluster, "worker")


# The leader's short case runs in `make test-faults` (its 40 s case too), to keep `make test` near
# its budget; the worker's short case stays in `make test`.
@pytest.mark.faults_long
async def test_the_leader_frozen_past_its_session_loses_and_repeats_nothing(cluster: Cluster) -> None:
    await freeze_and_thaw(cluster, "leader")


@pytest.mark.faults_long
@pytest.mark.parametrize("victim", ["worker", "leader"])
async def test_a_worker_frozen_for_40_s_of_a_60_s_stream_loses_and_repeats_nothing(
    cluster: Cluster, victim: str
) -> None:
    # Past STALL_TIMEOUT (20 s) too, and several rounds of the group's session timeout.
    await freeze_and_thaw(cluster, victim, frozen_seconds=40.0, count=6000)
