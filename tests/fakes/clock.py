"""One clock for the fakes of a test: real time plus an offset the test moves, so that a lease
ends when the test says so instead of after a sleep. And `atomic`: each call of a fake one step."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

_real_time = time.time


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return _real_time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def atomic(cls: type) -> type:
    """Every public method of `cls` one atomic step, as each call of the real store is (a Redis
    script, a conditional DynamoDB write): a sweep's launch starts its trials from several threads."""
    lock = threading.RLock()
    for name, method in list(vars(cls).items()):
        if callable(method) and not name.startswith("_"):
            setattr(cls, name, _locked(method, lock))
    return cls


def _locked(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return call
