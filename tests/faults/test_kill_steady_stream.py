"""SIGKILL of a processor replica and of a worker in a steady 100 frames/s stream, with the stats
and camera order checked too (`make test-faults`; `make test` runs the burst version in
tests/integration/test_orchestrator_failures.py).

In one clean-clone run the replica case missed 18 det pairs that the workers' results counter
had counted: the first batch of a results partition, which the tests' reader skipped by starting
where Tansu's ListOffsets(earliest) said (the batch stored first, not the lowest offset). Reads
from the start now begin at offset 0 (frame_buffer_sdk.offsets, tests/integration/test_read_from_start.py).

Every valid frame must be processed exactly once per capability it needs, by a processor
with that capability, or be dead-lettered with a reason. Counted exactly, with the stats
balanced and the stateful capability's results in camera order (tests/integration/fault_run.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster
from tests.integration.fault_run import (
    PROCESSORS,
    Pipeline,
    assert_accounted,
    assert_camera_order,
    assert_no_duplicates,
    assert_one_batch_repeated_at_most,
    assert_stats_balance,
    fault_settings,
    run_with_fault,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults_long]


@pytest.fixture
def cluster(make_settings: Any, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(fault_settings(make_settings), tmp_path / "logs")
    yield c
    c.close()


async def test_processor_replica_killed_mid_stream_loses_nothing_repeats_one_batch_at_most(
    cluster: Cluster,
) -> None:
    async def kill_a_det_replica(pipeline: Pipeline) -> None:
        pipeline.procs["det"][0].kill()

    _, outcome = await run_with_fault(cluster, kill_a_det_replica)

    assert_accounted(outcome, cluster, once_lettered=True)
    assert_one_batch_repeated_at_most(outcome, PROCESSORS["det"][0])
    assert_camera_order(outcome)
    assert_stats_balance(outcome)


async def test_worker_killed_mid_stream_loses_and_repeats_nothing(cluster: Cluster) -> None:
    async def kill_worker_2(pipeline: Pipeline) -> None:
        pipeline.workers[1][0].kill()

    _, outcome = await run_with_fault(cluster, kill_worker_2)

    assert_accounted(outcome, cluster)
    assert_no_duplicates(outcome)
    assert_camera_order(outcome)
    assert_stats_balance(outcome)
