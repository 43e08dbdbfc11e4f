"""The processes a test started, and whether any is left behind."""

from __future__ import annotations

import time

import psutil

from trainer.local.children import running


def descendants(pid: int) -> set[int]:
    """pid and every process below it."""
    try:
        return {pid} | {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return {pid}


def command_line(pid: int) -> str:
    """A process's command line as one string ('' once it is gone): redis-server rewrites its own
    into a title naming its address."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def still_running(pids: set[int], grace_s: float = 10.0) -> list[int]:
    """The pids still running after a grace period (a killed process with much memory takes a
    moment to exit on a loaded machine); a process truly left behind stays in the list."""
    deadline = time.monotonic() + grace_s
    left = [pid for pid in pids if running(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [pid for pid in left if running(pid)]
    return left
