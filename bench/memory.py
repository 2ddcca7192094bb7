"""Peak memory of child processes, measured the only way that is not inflated by the parent.

``wait4``'s ``ru_maxrss`` of a child started by fork/exec (or vfork) also counts the parent's
resident memory at the fork, so a benchmark process that has grown (a million-document index)
would report that size for every small child. ``VmHWM`` in ``/proc/PID/status`` is the
high-water mark of the child's own address space since its ``exec``: polled until the child
exits, its last reading is the child's peak (it never decreases).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

POLL_SECONDS = 0.05


def hwm_mib(pid: int) -> float | None:
    """The process's peak resident set so far (MiB), or None once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return None  # a zombie: its memory is gone


def wait_with_peak(process: subprocess.Popen, poll_seconds: float = POLL_SECONDS) -> float:
    """Wait for ``process`` to exit; its peak resident set (MiB)."""
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, hwm_mib(process.pid) or 0.0)
        time.sleep(poll_seconds)
    return peak
