"""Child processes that end with the process that started them, however it ends.

A stopped local cloud stops its execution environments and redis-servers itself; a killed one
(SIGKILL, the OOM killer) cannot. Linux's parent-death signal covers that: the kernel kills the
child when its parent goes. The kernel sends it when the *thread* that forked the child ends, and
servers here start children from request threads that end at once, so every child is forked from
one thread that lives as long as the process.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any

import psutil

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_requests: queue.Queue[tuple[tuple[Any, ...], dict[str, Any], queue.Queue]] = queue.Queue()
_lock = threading.Lock()
_spawner: threading.Thread | None = None


def _die_with(parent: int) -> None:
    """In the child, between fork and exec: ask for SIGKILL when the parent goes, and go now if it
    already has (it may have died before the request was made)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _serve() -> None:
    while True:
        args, kwargs, answer = _requests.get()
        try:
            answer.put(subprocess.Popen(*args, **kwargs))
        except BaseException as exc:  # handed back to the caller, raised there
            answer.put(exc)


def popen(*args: Any, **kwargs: Any) -> subprocess.Popen:
    """`subprocess.Popen`, for a child that must not outlive this process."""
    global _spawner
    with _lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_serve, name="child-spawner", daemon=True)
            _spawner.start()
    parent = os.getpid()
    answer: queue.Queue = queue.Queue(maxsize=1)
    _requests.put((args, {**kwargs, "preexec_fn": lambda: _die_with(parent)}, answer))
    result = answer.get()
    if isinstance(result, BaseException):
        raise result
    return result


def running(pid: int) -> bool:
    """Whether the process is running: a zombie has exited (only its parent's bookkeeping, which
    reaps it later, remains)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
