"""Which examples each step of training sees. One rule for the chain (trainer.engine), the
in-process trainer (monolithic) and the data-parallel workers and their reference, so that a
mini-batch holds the very same examples in each, in the same order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def epoch_permutation(seed: int, epoch: int, examples: int) -> np.ndarray:
    """The order of the examples in an epoch of mini-batches: a fresh permutation from the run's seed."""
    return np.random.default_rng([seed, epoch]).permutation(examples)


@dataclass(frozen=True)
class Batch:
    epoch: int
    index: int  # within the epoch
    columns: np.ndarray | None  # the examples it takes; None: all of them, in order (full batch)
    m: int  # how many
    t: int  # the optimizer's step count, from 1
    last: bool  # the epoch's last batch


def batches(examples: int, batch_size: int | None, epochs: int, seed: int) -> Iterator[Batch]:
    """Every step's batch: the whole set (no `batch_size`, or one at least the set's size), or
    consecutive slices of each epoch's permutation, the last one shorter when it does not divide."""
    size = examples if batch_size is None or batch_size >= examples else batch_size
    per_epoch = -(-examples // size)
    for epoch in range(epochs):
        order = None if size == examples else epoch_permutation(seed, epoch, examples)
        for index in range(per_epoch):
            columns = None if order is None else order[index * size : (index + 1) * size]
            m = examples if columns is None else len(columns)
            yield Batch(epoch, index, columns, m, epoch * per_epoch + index + 1, index == per_epoch - 1)
