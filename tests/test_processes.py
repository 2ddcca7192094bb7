"""The crawl's helper processes (extraction workers, the writer) never outlive it: killed with
kill -9, a crawl process leaves no helper behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from monitor.crawling import process_alive
from tests.fixtures.shared_data import REPO_ROOT

# A process that starts a pool of two helpers, prints their pids, then waits to be killed.
PARENT = """
import time
from concurrent.futures import wait
from crawler.processes import spawn_pool

if __name__ == "__main__":
    pool = spawn_pool(2)
    wait([pool.submit(time.sleep, 0.2) for _ in range(4)])
    print(" ".join(str(pid) for pid in pool._processes), flush=True)  # both started
    time.sleep(60)
"""


def test_helpers_die_with_a_killed_crawl_process() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=REPO_ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    helpers = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(helpers) == 2 and all(process_alive(pid) for pid in helpers)

    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(process_alive(pid) for pid in helpers)
