"""Peak memory of child processes, measured the only way that is not inflated by the parent.

``wait4``'s ``ru_maxrss`` of a child started by fork/exec (or vfork) also counts the parent's
resident memory at the fork, so a benchmark process that has grown (a million-document index)
would report that size for every small child. ``VmHWM`` in ``/proc/PID/status`` is the
high-water mark of the child's own address space since its ``exec``: polled until the child
exits, its last reading is the child's peak (it never decreases).
"""

from __future__ import annotations

import os
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


def _proc_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, …)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live process descending from it (extraction workers included)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _proc_fields(int(stat.parent.name))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_mib(pid: int) -> float:
    """The process's resident set now (MiB; 0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    return 0.0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds the process has used so far (None once it has exited)."""
    fields = _proc_fields(pid)
    if not fields:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TreeSampler:
    """Polled while a process runs: the peak of its whole tree's summed resident set, and the
    CPU time of the process itself and of its descendants (their last readings)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mib = 0.0
        self._cpu: dict[int, float] = {}

    def sample(self) -> None:
        tree = process_tree(self.pid)
        self.peak_mib = max(self.peak_mib, sum(rss_mib(pid) for pid in tree))
        for pid in tree:
            seconds = cpu_seconds(pid)
            if seconds is not None:
                self._cpu[pid] = seconds

    @property
    def own_cpu(self) -> float:
        return self._cpu.get(self.pid, 0.0)

    @property
    def children_cpu(self) -> float:
        return sum(seconds for pid, seconds in self._cpu.items() if pid != self.pid)
