"""Helper processes of a crawl (extraction workers, the storing writer): spawned, quiet on
Ctrl-C, and never outliving the crawl.

They are started with ``spawn``: forking the event loop's threaded process is not safe. They
ignore SIGINT (the crawl's own process decides how to stop, and shuts its pools down when its
spider closes), and die with their parent: on Linux the kernel kills them at once when it dies
(``PR_SET_PDEATHSIG``: a writer killed mid-group commits nothing, like its parent), elsewhere
they exit within a second. No process is left behind, whatever happens to the crawl.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_PARENT_CHECK_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def spawn_pool(workers: int, initializer: Callable[..., None] | None = None,
               initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` helper processes, each running ``initializer(*initargs)`` first
    (a module-level function: it is pickled). They start now, not at the first task, so that
    their imports (a second or more) overlap the crawl's own start."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_helper,
                               initargs=(os.getpid(), initializer, initargs))
    for _ in range(workers):
        pool.submit(_started)
    return pool


def _started() -> None:
    """A task that does nothing: submitting one starts a helper."""


def _start_helper(parent_pid: int, initializer: Callable[..., None] | None,
                  initargs: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL to this process when its parent dies (the pools are
    started from the crawl's main thread, which lives as long as the crawl)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # no prctl: the watchdog does it
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_CHECK_SECONDS)
    os._exit(0)
