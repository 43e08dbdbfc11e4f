"""Asynchronous successive halving: which trials go on at each rung. Pure.

Rungs are at `min_epochs × reduction_factor^k` epochs, below the trial's epochs. A trial that
reaches a rung goes on only if it is in the top 1/reduction_factor (⌊n / reduction_factor⌋, at
least one) of the n trials that have reached that rung so far, itself included; between equal
scores the earlier arrival holds the place. So the best so far always goes on, and nobody waits
for the others: that is what makes it asynchronous, and what lets a sweep keep every slot busy.
"""

from __future__ import annotations

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
    """`others`: the scores of the trials that reached the rung before this one."""
    kept = max(1, (len(others) + 1) // reduction_factor)
    ahead = sum(1 for other in others if other >= value)  # a tie goes to the one there first
    return RungDecision.CONTINUE if ahead < kept else RungDecision.STOP
