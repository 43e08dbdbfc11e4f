"""How often a waiter looks again at what it waits for (the local cloud's idle state, a run's item,
a node's replacement)."""

from __future__ import annotations

from collections.abc import Iterator


def pauses(first_s: float = 0.01, most_s: float = 0.1) -> Iterator[float]:
    """The sleeps between looks: short at first, as most waits end soon, then half as long again
    each time up to `most_s`. Every look is a signed request the cloud serves (about a millisecond
    of CPU on each side): a wait of a minute at a fixed 50 ms costs 1,200 of them, here 600; a
    longer pause would cost the waiter the time the answer was already there."""
    pause = first_s
    while True:
        yield pause
        pause = min(most_s, pause * 1.5)
