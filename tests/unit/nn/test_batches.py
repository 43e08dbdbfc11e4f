"""Which examples each step sees (trainer/nn/batches.py)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.nn.batches import batches, epoch_permutation


@pytest.mark.parametrize("size", [1, 3, 7, 9])
def test_each_epoch_of_mini_batches_takes_every_example_once_in_its_permutation(size: int) -> None:
    steps = list(batches(10, size, epochs=2, seed=5))
    per_epoch = -(-10 // size)
    assert [b.t for b in steps] == list(range(1, 2 * per_epoch + 1)), "the optimizer's step counts on"
    for epoch in range(2):
        mine = [b for b in steps if b.epoch == epoch]
        assert [b.index for b in mine] == list(range(per_epoch)) and [b.last for b in mine][-1]
        assert sum(b.last for b in mine) == 1
        taken = np.concatenate([b.columns for b in mine])
        np.testing.assert_array_equal(taken, epoch_permutation(5, epoch, 10))
        assert [b.m for b in mine] == [len(b.columns) for b in mine]
    assert not np.array_equal(np.concatenate([b.columns for b in steps[:per_epoch]]), np.arange(10)), "shuffled"


@pytest.mark.parametrize("size", [None, 10, 11])
def test_a_batch_of_the_whole_set_takes_it_in_order_each_epoch(size: int | None) -> None:
    steps = list(batches(10, size, epochs=3, seed=5))
    assert [(b.epoch, b.columns, b.m, b.t, b.last) for b in steps] == [(e, None, 10, e + 1, True) for e in range(3)]
