"""The embedded servers never outlive the process that started them, even a SIGKILLed one."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from devtools.devstack_daemon import alive
from tests.integration.cluster import ROOT

pytestmark = pytest.mark.integration

OWNER = """
import time
from devtools.devstack import DevStack
from devtools.devstack_daemon import _server_pids
stack = DevStack(use_env=False).start()
print(",".join(map(str, _server_pids(stack))), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process death signals are Linux-only")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv (util-linux): servers stop on clean exits only")
def test_servers_die_with_their_sigkilled_owner() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    pids: list[int] = []
    try:
        assert owner.stdout is not None
        ready, _, _ = select.select([owner.stdout], [], [], 90)
        assert ready, "the owner did not start its stack within 90 s"
        pids = [int(p) for p in owner.stdout.readline().strip().split(",") if p]
        if not pids:
            pytest.skip("the stack runs in containers here, not as child processes")
        assert all(alive(pid) for pid in pids)

        owner.send_signal(signal.SIGKILL)
        owner.wait(10)

        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if alive(pid)], "servers outlived their SIGKILLed owner"
    finally:
        if owner.poll() is None:
            owner.kill()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
