"""Asynchronous successive halving: which trials go on at each rung. Pure.

Rungs are at `min_epochs × reduction_factor^k` epochs, below the trial's epochs. A trial that
reaches a rung goes on only if it is in the top 1/reduction_factor of the trials that have
reached that rung so far (itself included); the first to arrive always goes on. Nobody waits
for the others: that is what makes it asynchronous, and what lets a sweep keep every slot busy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from trainer.vocabulary import RungDecision


def rungs(min_epochs: int, reduction_factor: int, epochs: int) -> tuple[int, ...]:
    """The epoch counts at which a trial of `epochs` epochs is judged."""
    out, rung = [], min_epochs
    while rung < epochs:
        out.append(rung)
        rung *= reduction_factor
    return tuple(out)


def decide(value: float, others: Sequence[float], reduction_factor: int) -> RungDecision:
    """Go on if fewer than ceil(n / reduction_factor) of the n trials at the rung (this one among
    them) did strictly better; ties go on together."""
    kept = math.ceil((len(others) + 1) / reduction_factor)
    better = sum(1 for other in others if other > value)
    return RungDecision.CONTINUE if better < kept else RungDecision.STOP
