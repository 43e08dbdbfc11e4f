"""What a progress bar shows of a run whose epochs land in batches.

An invocation of the fused chain commits up to a few hundred epochs at once, and only then are their
epoch items written: shown as they land, a bar sits still for the length of an invocation, then
jumps. Nothing about those epochs can be known before they land (nothing is visible before the
commit), so the bar plays each landing out over the time the next one is expected to take (the
intervals between landings so far): it moves every time it is drawn, each epoch with its own cost
and validation figures, it never shows an epoch that has not happened, and its lag is at most about
one invocation. At the run's end it shows every epoch recorded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

SMOOTHING = 0.5  # the weight of the newest interval in the expected one


class Pacer:
    """How many of the landed epochs to show at a given time. Pure: the caller gives the clock."""

    def __init__(self, now: float):
        self.landed = 0  # epochs recorded so far
        self.base = 0.0  # epochs shown when the last batch landed
        self.landed_at = now
        self.interval: float | None = None  # seconds the next landing is expected to take

    def land(self, landed: int, now: float) -> None:
        """`landed` epochs are recorded now (a count that only grows; a smaller one is ignored)."""
        if landed <= self.landed:
            return
        shown = self.exact(now)
        elapsed = max(now - self.landed_at, 1e-6)
        self.interval = elapsed if self.interval is None else SMOOTHING * elapsed + (1 - SMOOTHING) * self.interval
        self.base, self.landed, self.landed_at = shown, landed, now

    def exact(self, now: float) -> float:
        if self.interval is None:
            return float(self.landed)
        played = min(1.0, max(0.0, (now - self.landed_at) / self.interval))
        return self.base + (self.landed - self.base) * played

    def shown(self, now: float) -> int:
        return min(self.landed, math.floor(self.exact(now)))


def learning(epoch: dict[str, Any]) -> dict[str, str]:
    """What the bar says of learning: the epoch's cost, and its validation figures when the run holds
    examples out."""
    shown = {"cost": f"{float(epoch['cost']):.5g}"} if "cost" in epoch else {}
    if epoch.get("validation_cost") is not None:
        shown["val_cost"] = f"{float(epoch['validation_cost']):.5g}"
    if epoch.get("validation_accuracy") is not None:
        shown["val_acc"] = f"{float(epoch['validation_accuracy']):.4f}"
    return shown


class EpochBar:
    """Drives a tqdm bar from what a follower sees of a run: `update` at each look at the run's
    record, `finish` once it has ended. `read_epochs(first)` gives the epoch items from `first` on."""

    def __init__(
        self, bar: Any, read_epochs: Callable[[int], list[dict[str, Any]]], clock: Callable[[], float] = time.monotonic
    ):
        self.bar, self.read_epochs, self.clock = bar, read_epochs, clock
        self.items: dict[int, dict[str, Any]] = {}
        self.pacer = Pacer(clock())
        self.seen_seq: Any = None

    @property
    def recorded(self) -> int:
        """Epochs recorded without a gap from the first (a history's batches are written side by side)."""
        count = 0
        while count in self.items:
            count += 1
        return count

    def _read(self) -> None:
        for item in self.read_epochs(self.recorded):
            self.items[int(item["epoch"])] = item

    def update(self, run: Mapping[str, Any]) -> None:
        if self.bar.disable:
            return
        now = self.clock()
        # A run's epoch items are written before its record's step moves on: read them only then.
        if run.get("last_seq") != self.seen_seq:
            self.seen_seq = run.get("last_seq")
            self._read()
            self.pacer.land(self.recorded, now)
        self._show(self.pacer.shown(now))

    def finish(self) -> None:
        """Every epoch recorded, with the last one's figures: the run's true count."""
        if self.bar.disable:
            return
        self._read()
        self._show(self.recorded)

    def _show(self, shown: int) -> None:
        shown = min(shown, self.bar.total) if self.bar.total else shown
        if shown == self.bar.n:
            return
        if shown > 0:
            self.bar.set_postfix(learning(self.items[shown - 1]), refresh=False)
        self.bar.update(shown - self.bar.n)
