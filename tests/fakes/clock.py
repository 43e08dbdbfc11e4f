"""One clock for the fakes of a test: real time plus an offset the test moves, so that a lease
ends when the test says so instead of after a sleep."""

from __future__ import annotations

import time

_real_time = time.time


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return _real_time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
