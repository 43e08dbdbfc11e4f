"""Micro-shards: the fixed unit of data-parallel work, independent of the number of workers.

The training set's examples 0..m-1 are cut into MICRO_SHARDS contiguous ranges. A batch's examples
(the chain's batch: the whole set, or the epoch permutation's slice) are split among the
micro-shards by which range each example falls in, in the order the batch lists them. A worker owns
a contiguous block of micro-shards, so it holds one contiguous slice of the training set and nothing
else. Workers may be any number from 1 to MAX_WORKERS; a number that divides MICRO_SHARDS gives
every worker the same share.
"""

from __future__ import annotations

import numpy as np

# A power of two (the reduction tree is binary) and a multiple of every worker count that should
# share evenly: 1, 2, 4, 8, 16. More micro-shards would allow more workers but cut a mini-batch
# into slivers too thin for BLAS to run efficiently.
MICRO_SHARDS = 16
MAX_WORKERS = MICRO_SHARDS


def bounds(total: int, parts: int) -> list[int]:
    """parts + 1 boundaries cutting 0..total into parts contiguous ranges whose sizes differ by at
    most one (the first `total % parts` ranges are the longer)."""
    if parts < 1 or total < 0:
        raise ValueError(f"cannot cut {total} into {parts} parts")
    base, extra = divmod(total, parts)
    out = [0]
    for i in range(parts):
        out.append(out[-1] + base + (1 if i < extra else 0))
    return out


def micro_shards_of(workers: int, worker: int) -> range:
    """The micro-shards worker `worker` (0-based) of `workers` computes and holds the data of."""
    check_workers(workers)
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} is not one of 0..{workers - 1}")
    cut = bounds(MICRO_SHARDS, workers)
    return range(cut[worker], cut[worker + 1])


def examples_of(examples: int, shards: range) -> tuple[int, int]:
    """The contiguous range [lo, hi) of training examples that the micro-shards `shards` hold."""
    cut = bounds(examples, MICRO_SHARDS)
    return cut[shards.start], cut[shards.stop]


def check_workers(workers: int) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be an integer from 1 to {MAX_WORKERS}, got {workers!r}")


def split_batch(columns: np.ndarray | None, examples: int) -> list[np.ndarray]:
    """The batch's example indices per micro-shard, each in the batch's order.

    `columns` None is the full batch: micro-shard k's own range. Otherwise every index is placed in
    the micro-shard whose range holds it (some may get none in a small batch)."""
    cut = bounds(examples, MICRO_SHARDS)
    if columns is None:
        return [np.arange(cut[k], cut[k + 1]) for k in range(MICRO_SHARDS)]
    owner = np.searchsorted(np.asarray(cut[1:]), columns, side="right")
    return [columns[owner == k] for k in range(MICRO_SHARDS)]


def held_examples(examples: int, workers: int) -> int:
    """The most training examples any one of `workers` holds (all of them for one worker)."""
    return max(hi - lo for lo, hi in (examples_of(examples, micro_shards_of(workers, w)) for w in range(workers)))


def fewest_held(examples: int, workers: int) -> int:
    return min(hi - lo for lo, hi in (examples_of(examples, micro_shards_of(workers, w)) for w in range(workers)))


def micro_shard_examples(examples: int, batch: int) -> int:
    """The most examples one micro-shard computes at once: its share of a full batch, at most the
    whole mini-batch (all of a batch's examples may fall in one micro-shard's range)."""
    return min(batch, -(-examples // MICRO_SHARDS))
